package inbox

// The login of a server that lets a mail client read an agent's users'
// mail (im2000-imapd, im2000-pop3d): the settings both read alike, the
// password asked of the agent, and the delays per client address that
// the server keeps itself. One place for what the two would otherwise
// each write.

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"time"

	"im2000/lib/auth"
	"im2000/lib/conf"
	"im2000/lib/fail"
	"im2000/lib/locate"
	"im2000/lib/session"
	mailstore "im2000/lib/store" // its account-name rule; lib/inbox has a store type of its own
	"im2000/lib/tlsconf"
	"im2000/lib/wire/rnaqp"
)

// ServerSettings are the settings every such server reads.
type ServerSettings struct {
	RNA    string         // rna: where the agent's RNAQP server is
	State  string         // the server's own directory (imapstate, pop3state)
	Limits session.Limits // sessionsperaddr, sessionlifetime, authtimeout
	// Failures delays failed logins per client address (authdelay,
	// authmaxdelay), counted in State/.authfail (CheckLogin).
	Failures *auth.Limiter
	// ClearAuth is cleartextauth: passwords in cleartext from anywhere,
	// not only loopback (tlsconf.PasswordOK).
	ClearAuth bool
}

// LoadServer reads ServerSettings: state names the setting of the
// server's directory, holding what it holds (for the message when it is
// not set), proto the protocol the session limits count for.
func LoadServer(d conf.Dir, state, holding, proto string) (ServerSettings, error) {
	var s ServerSettings
	var err error
	if s.RNA, err = d.Str("rna"); err == nil && s.RNA == "" {
		err = fmt.Errorf("write where the agent's RNAQP server is (host:port, or a domain) to %s", d.Path("rna"))
	}
	if err == nil {
		s.State, err = d.Str(state)
		if err == nil && s.State == "" {
			err = fmt.Errorf("write a directory for %s to %s", holding, d.Path(state))
		}
	}
	if err == nil {
		s.Limits, err = session.ServerLimits(d, s.State, proto)
	}
	if err == nil {
		s.Failures, err = auth.LimiterFromConf(d, filepath.Join(s.State, ".authfail"))
	}
	if err == nil {
		s.ClearAuth, err = tlsconf.ClearAuth(d)
	}
	return s, err
}

// CheckPassword asks the agent at rna (RNAQP Authenticate) whether pass is
// user's password, in a session of its own that touches nothing on disk
// here: a wrong password must leave no trace and hold no lock. A refusal
// wraps ErrAuth.
func CheckPassword(d conf.Dir, rna, user, pass string) error {
	loc, err := locate.FromConf(d)
	if err != nil {
		return err
	}
	timeout, err := session.ClientTimeout(d)
	if err != nil {
		return err
	}
	c, err := loginAgent(loc, timeout, rna, user, pass)
	if err != nil {
		return err
	}
	c.Close()
	return nil
}

// loginAgent opens an RNAQP session with the agent at rna and logs in as
// user (Authenticate): the one login of CheckPassword and Inbox.Take. Only
// the agent's "not authenticated" is a wrong password (permanent, wrapping
// ErrAuth); anything else, the agent unreachable or refusing for now, is
// temporary, or clients would drop a right password.
func loginAgent(loc *locate.Locator, timeout time.Duration, rna, user, pass string) (*session.Client, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := session.DialWhere(ctx, loc, rnaqp.Protocol, rna, timeout)
	if err != nil {
		return nil, fail.Temp(fmt.Errorf("agent %s: %w", rna, err))
	}
	if _, err := session.Expect[rnaqp.AuthenticateOK](c, &rnaqp.Authenticate{Account: user, Password: pass}); err != nil {
		c.Close()
		var se *session.StatusError
		if errors.As(err, &se) && se.Status == rnaqp.ErrorNotAuthenticated {
			return nil, fail.Perm(fmt.Errorf("agent %s, account %s: %w", rna, user, ErrAuth))
		}
		return nil, fail.Temp(fmt.Errorf("agent %s: %w", rna, err))
	}
	return c, nil
}

// CheckLogin checks user's password with check (CheckPassword, or a fuzz
// test's), delayed per client address (remote) by the server's own
// limiter lim (nil: no delays). The agent sees every check come from the
// server's address: were the client not delayed here, one attacker's
// guesses would earn that address's delays at the agent for every user
// of the server (list the server in the agent's authfrontends). A name
// that is no account name is refused without a check and counted as a
// failure; an attempt from an address whose answers are due further ahead
// than authmaxdelay is refused unchecked, temporarily (auth.ErrThrottled),
// after a second (the client's own session waits, so that a loop of
// refusals does not spin).
func CheckLogin(lim *auth.Limiter, remote netip.Addr, user, pass string, check func(user, pass string) error) error {
	var due time.Time
	if lim != nil {
		var err error
		if due, err = lim.Ready(remote); err != nil {
			time.Sleep(time.Second)
			return err
		}
	}
	var err error
	if mailstore.CheckAccount(user) != nil {
		err = fail.Perm(fmt.Errorf("not a valid account name: %w", ErrAuth))
		user = ""
	} else {
		err = check(user, pass)
	}
	switch {
	case lim == nil:
	case err == nil:
		lim.Succeed(remote, user)
	case errors.Is(err, ErrAuth):
		time.Sleep(lim.FailAt(remote, user, due))
	}
	return err
}
