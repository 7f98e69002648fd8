// Command im2000-queryd is a recipient notification agent's RNAQP server:
// recipients authenticate and take their notifications. See
// man/im2000-queryd.8.
package main

import (
	"os"
	"path/filepath"

	"im2000/lib/agent"
	"im2000/lib/auth"
	"im2000/lib/conf"
	"im2000/lib/session"
	"im2000/lib/wire"
	"im2000/lib/wire/rnaqp"
)

const usage = `usage: im2000-queryd [-l addr:port] [-c n] [-t seconds] [-m bytes] [-tls]
  Serves RNAQP for the agent spool in $IM2000_AGENT (or the agent file of
  the configuration directory $IM2000_CONF): one session on stdin/stdout,
  as under tcpserver, or with -l as a listener.
` + session.FlagUsage

type config struct {
	spool    *agent.Spool
	auth     *auth.Checker
	maxBytes int
}

func main() {
	f := session.ParseFlags("im2000-queryd", usage, os.Args[1:])
	d := conf.FromEnv()
	// The configuration in force: a listener's SIGHUP loads a new one, and
	// each session keeps the one it began with.
	srv := &session.Server{Proto: rnaqp.Protocol, Log: logSession}
	err := session.RunReloading(srv, f, d, session.Reloading[*config]{
		Load:       func() (*config, session.Limits, error) { return load(d, f) },
		NewHandler: func(c *config, _ *session.Session) session.Handler { return c },
		Settings:   func() { logSettings(d) },
		Failed:     logReloadFailed,
	})
	if err != nil {
		logFatal(err)
	}
}

// load reads the settings: the spool, the password checks, the limits.
func load(d conf.Dir, f session.Flags) (*config, session.Limits, error) {
	dir, err := d.Agent()
	if err != nil {
		return nil, session.Limits{}, err
	}
	c := &config{maxBytes: f.MaxPDU - 64<<10}
	if c.spool, err = agent.Open(dir, false); err != nil {
		return nil, session.Limits{}, err
	}
	if c.auth, err = auth.FromConf(d, filepath.Join(dir, ".authfail")); err != nil {
		return nil, session.Limits{}, err
	}
	// Whether the account has a spool is decided inside the check, as a
	// wrong password: tested after a success, it answered the right
	// password of an account without a spool at once and a wrong one after
	// the delay.
	c.auth.Serves = c.spool.Serves
	lim, err := session.ServerLimits(d, dir, rnaqp.Protocol.Name)
	return c, lim, err
}

func (c *config) Abort(*session.Session) {}

func (c *config) Handle(s *session.Session, cmd wire.Body) session.Reply {
	switch x := cmd.(type) {
	case *rnaqp.Authenticate:
		if !s.PasswordOK() {
			logCleartext(s.Remote)
			return session.Reply{Status: rnaqp.ErrorNotPermitted}
		}
		ok, err := c.auth.Check(s.Remote.Addr(), x.Account, x.Password)
		if err != nil {
			logAuthError(s.Remote, err)
			return session.Reply{Status: rnaqp.ErrorInternalProblem}
		}
		if !ok {
			logLoginFailed(s.Remote)
			return session.Reply{Status: rnaqp.ErrorNotAuthenticated}
		}
		s.Account = x.Account
		logLogin(s.Remote, s.Account)
		return session.Reply{Body: rnaqp.AuthenticateOK{}}
	case rnaqp.RetrieveAndClear, *rnaqp.RetrieveAndClear:
		entries, err := c.spool.List(s.Account, c.maxBytes)
		if err != nil {
			logListFailed(s.Remote, s.Account, err)
			return session.Reply{Status: rnaqp.ErrorInternalProblem}
		}
		resp := &rnaqp.RetrieveAndClearOK{Notifications: []rnaqp.NotificationAndLocalData{}}
		for _, e := range entries {
			resp.Notifications = append(resp.Notifications, e.N)
		}
		// Cleared before the answer is sent: should it not arrive, the
		// stores notify again, as they do until the recipient silences.
		c.spool.Remove(s.Account, entries)
		logTook(s.Remote, s.Account, len(entries))
		return session.Reply{Body: resp}
	}
	return session.Reply{Status: rnaqp.ErrorUnexpectedCommand, ForceAbort: true}
}
