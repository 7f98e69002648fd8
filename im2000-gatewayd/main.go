// Command im2000-gatewayd is the inbound SMTP gateway: an SMTP relay
// server (an MX, no AUTH) that takes mail from the SMTP world for this
// host's own accounts and hosted lists, and for nothing else. Each
// message it takes is committed once into the gateway account's archive
// at the local store, with every local recipient and list of the
// transaction, and notified as any message is: readers fetch it with
// im2000-fetch, im2000-pop3d or any reader, unchanged. What SMTP said about
// the sender (SPF of the envelope sender, DKIM signatures) is recorded in
// an Authentication-Results field. See man/im2000-gatewayd.8.
//
// It is a program of its own, not a mode of im2000-smtpd: smtpd acts for
// an authenticated account and writes into that account's archive under
// the From rule; the gateway acts for anonymous Internet senders and
// writes into the gateway account's archive alone. One trust boundary per
// program (DESIGN-NOTES.md, "SMTP gateways").
package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/emersion/go-smtp"

	"im2000/lib/conf"
	"im2000/lib/fail"
	"im2000/lib/session"
)

const usage = `usage: im2000-gatewayd [-l addr:port] [-c n] [-t seconds]
  Inbound SMTP gateway (an MX): takes mail for this host's accounts and
  hosted lists into the gateway account's archive. One session on
  stdin/stdout under tcpserver, or with -l as a listener. Settings are in
  $IM2000_CONF. STARTTLS is offered when tlscert and tlskey are set.
  -l addr:port  listen on addr:port instead of serving stdin/stdout
  -c n          at most n sessions at once with -l (default 40)
  -t seconds    close a session idle for this long (default 300)
  -h            show this help`

func main() {
	f := session.ParseTextFlags("im2000-gatewayd", usage, os.Args[1:], 300*time.Second)
	if f.TLS {
		fail.Usage("-tls is not for an MX: SMTP between servers starts in cleartext and offers STARTTLS\n%s", usage)
	}
	d := conf.FromEnv()
	c, err := load(d, nil)
	if err != nil {
		logFatal(fail.Temp(err))
	}
	g := generations(d, f, c)
	if f.Listen != "" {
		listen(f, c, g)
		return
	}
	// Under tcpserver: one session, this process's; its settings are read
	// afresh by the next. SIGHUP reads the certificate again, as smtpd's.
	if c.certs != nil {
		c.certs.ReloadOnSIGHUP()
	}
	if err := session.ServeOneGeneration(c, g); err != nil {
		logFatal(err)
	}
}

// generations is how sessions are served with c's settings, one on stdin
// or a listener's (listen), through lib/session: each SIGHUP that loads
// the settings makes a new go-smtp server for the sessions to come, as
// go-smtp reads its limits (databytes, maxrcpt, me) from its Server while
// sessions run; the sessions already begun finish with the settings they
// began with. SIGTERM and SIGINT close every session.
func generations(d conf.Dir, f session.Flags, c *config) session.Generations[*config] {
	inForce := c // only the signal loop reads and sets it
	return session.Generations[*config]{
		Load: func() (*config, error) {
			nc, err := load(d, inForce)
			if err == nil {
				inForce = nc
			}
			return nc, err
		},
		Limits:       func(c *config) session.Limits { return c.limits },
		NewServer:    func(c *config) session.GenServer { return newServer(c, f.Timeout) },
		Admit:        admit,
		Settings:     func() { logSettings(d) },
		Failed:       logReloadFailed,
		Stopping:     logStopping,
		AcceptFailed: logAcceptFailed,
	}
}

// listen serves f.Listen (-l) with g.
func listen(f session.Flags, c *config, g session.Generations[*config]) {
	nl, err := net.Listen("tcp", f.Listen)
	if err != nil {
		logFatal(fail.Temp(err))
	}
	l := session.LimitListener(nl, f.Conns, "421 4.3.2 Too many sessions, try again later\r\n")
	logListening(l.Addr(), f.Conns, c.account)
	session.ServeGenerations(l, c, g)
}

// newServer is a go-smtp server whose sessions use c.
func newServer(c *config, timeout time.Duration) *smtp.Server {
	srv := smtp.NewServer(smtp.BackendFunc(func(conn *smtp.Conn) (smtp.Session, error) {
		return &client{cfg: c, smtp: conn, peer: conn.Conn().RemoteAddr()}, nil
	}))
	srv.Domain = c.me
	// One over: go-smtp refuses a DATA message of exactly its limit; Data
	// enforces databytes exactly (session.go). load refuses databytes 0.
	srv.MaxMessageBytes = c.maxMessage + 1
	srv.MaxRecipients = c.maxRcpt
	srv.MaxLineLength = 1000 // RFC 5321 4.5.3.1.6
	srv.ReadTimeout = timeout
	srv.WriteTimeout = timeout
	srv.TLSConfig = c.tls // nil: no STARTTLS
	srv.ErrorLog = logger{}
	return srv
}

// logger takes go-smtp's messages; a panic it stopped is an alert.
type logger struct{}

func (logger) Printf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	if len(format) >= 13 && format[:13] == "panic serving" {
		logPanic(msg)
		return
	}
	logSMTP(msg)
}

func (logger) Println(v ...any) { logSMTP(fmt.Sprint(v...)) }

// sessionsDir is where the per-address slot files of tcpserver sessions
// live: apart from smtpd's, as each service has its own cap.
func sessionsDir(root string) string { return filepath.Join(root, ".sessions", "gateway") }
