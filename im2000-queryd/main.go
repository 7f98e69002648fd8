// Command im2000-queryd is a recipient notification agent's RNAQP server:
// recipients authenticate and take their notifications. See
// man/im2000-queryd.8.
package main

import (
	"os"
	"os/signal"
	"path/filepath"
	"sync/atomic"
	"syscall"

	"im2000/lib/agent"
	"im2000/lib/auth"
	"im2000/lib/conf"
	"im2000/lib/session"
	"im2000/lib/tlsconf"
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
	c, lim, err := load(d, f)
	if err != nil {
		logFatal(err)
	}
	// The configuration in force: a SIGHUP swaps it, and each session
	// keeps the one it began with.
	var cur atomic.Pointer[config]
	cur.Store(c)
	srv := &session.Server{Proto: rnaqp.Protocol, Log: logSession, Limits: lim,
		NewHandler: func(*session.Session) session.Handler { return cur.Load() }}
	if f.Listen != "" {
		// Under tcpserver each session is a process that reads the
		// settings afresh: SIGHUP is for the listener.
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		logSettings(d)
		go func() {
			for range hup {
				reload(d, f, srv, &cur)
			}
		}()
	}
	if err := session.Run(srv, f); err != nil {
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

// reload reads every setting again (SIGHUP in listener mode) and puts
// them in force for the sessions that begin from now on; settings that do
// not load leave those in force as they are.
func reload(d conf.Dir, f session.Flags, srv *session.Server, cur *atomic.Pointer[config]) {
	c, lim, err := load(d, f)
	var clearAuth bool
	if err == nil {
		clearAuth, err = tlsconf.ClearAuth(d)
	}
	if err != nil {
		logReloadFailed(err)
		return
	}
	cur.Store(c)
	srv.Reconfigure(lim, clearAuth)
	logSettings(d)
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
