// Command im2000-pop3d lets a POP3 mail client read IM2000 mail: on login
// it takes the user's notifications from the user's agent, shows one
// maildrop entry per message, fetches each from its sender's store when
// the client asks (RETR, TOP), and silences at the stores the messages the
// client deleted. See man/im2000-pop3d.8.
package main

import (
	"crypto/tls"
	"io"
	"net"
	"os"
	"time"

	"im2000/lib/agent"
	"im2000/lib/auth"
	"im2000/lib/conf"
	"im2000/lib/fail"
	"im2000/lib/inbox"
	"im2000/lib/session"
)

const usage = `usage: im2000-pop3d [-l addr:port] [-c n] [-t seconds] [-tls]
  POP3 access to IM2000 mail for the accounts of the agent named in the rna
  file of $IM2000_CONF: one session on stdin/stdout under tcpserver, or
  with -l as a listener.
  -l addr:port  listen on addr:port instead of serving stdin/stdout
  -c n          at most n sessions at once with -l (default 40)
  -t seconds    close a session idle for this long (default 600)
  -tls          speak TLS from the first byte (port 995 style); without it,
                STLS is offered when tlscert and tlskey are set
  -h            show this help`

type config struct {
	conf    conf.Dir
	rna     string
	state   string
	timeout time.Duration
	limits  session.Limits // sessions per address, lifetime, time to log in
	// failures delays failed logins per client address (limits.go); nil:
	// not at all (the fuzz test).
	failures *auth.Limiter
	// tls is nil without a certificate (no STLS); implicit is -tls.
	// clearAuth is the setting cleartextauth (tls.go).
	tls       *tls.Config
	implicit  bool
	clearAuth bool
	// check asks the agent whether pass is user's password (nil, or an
	// error wrapping inbox.ErrAuth); open takes the user's notifications
	// and opens the maildrop. The fuzz test puts both in memory.
	check func(user, pass string) error
	open  func(dir, user, pass, peer string) (mailbox, []*entry, error)
}

// mailbox is what a session needs of the user's lib/inbox.Inbox.
type mailbox interface {
	RetrieveTo(e agent.Entry, kind uint64, w io.Writer) (int64, error)
	Silence(e agent.Entry) error
	Done(e agent.Entry)
	// SetDeadline ends the retrievals and silences still going at the
	// session's lifetime (lib/inbox.Inbox.SetDeadline).
	SetDeadline(t time.Time)
	Close()
}

func main() {
	f := session.ParseTextFlags("im2000-pop3d", usage, os.Args[1:], 600*time.Second)
	d := conf.FromEnv()
	// The certificate is loaded once: lib/tlsconf reloads the pair itself
	// (on SIGHUP, and when its files change).
	tlsCfg, err := loadTLS(d, f.TLS)
	if err != nil {
		logFatal(fail.Temp(err))
	}
	c, err := load(d, f, tlsCfg)
	if err != nil {
		logFatal(fail.Temp(err))
	}
	// Each session keeps the configuration it began with; with -l, SIGHUP
	// loads the settings again for the sessions to come, and settings that
	// do not load leave those in force.
	err = session.RunText(f, c, session.TextServer[*config]{
		Busy:     "-ERR [SYS/TEMP] too many sessions, try again later\r\n",
		BusyAddr: "-ERR [SYS/TEMP] too many sessions from your address, try again later\r\n",
		Load:     func() (*config, error) { return load(d, f, tlsCfg) },
		Limits:   func(c *config) session.Limits { return c.limits },
		Serve:    func(c *config, conn net.Conn, peer string) { c.serve(conn, peer) },
		Log:      textLog(d),
	})
	if err != nil {
		logFatal(fail.Temp(err))
	}
}

// load reads every setting pop3d uses (at start, and on SIGHUP with -l);
// tlsCfg is the certificate loaded once (loadTLS).
func load(d conf.Dir, f session.Flags, tlsCfg *tls.Config) (*config, error) {
	c := &config{conf: d, timeout: f.Timeout, tls: tlsCfg, implicit: f.TLS}
	c.check, c.open = c.checkPassword, c.openInbox
	s, err := inbox.LoadServer(d, "pop3state", "the users' pending messages", "pop3")
	if err != nil {
		return nil, err
	}
	c.rna, c.state, c.limits, c.failures, c.clearAuth = s.RNA, s.State, s.Limits, s.Failures, s.ClearAuth
	return c, nil
}
