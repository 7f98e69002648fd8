// Command im2000-smtpd lets an SMTP mail client submit into IM2000 (RFC 6409
// submission): each authenticated SMTP transaction becomes one message in
// the account's own archive, directly in the local store or over MSOAP to a
// remote one. It never sends a bounce. See man/im2000-smtpd.8.
//
// It uses github.com/emersion/go-smtp for the protocol: a maintained ESMTP
// server with PIPELINING, 8BITMIME, SIZE, AUTH via go-sasl, line and size
// limits and timeouts, which would otherwise be written here again.
package main

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"im2000/lib/auth"
	"im2000/lib/conf"
	"im2000/lib/fail"
	"im2000/lib/remote"
	"im2000/lib/session"
	"im2000/lib/store"
	"im2000/lib/tlsconf"
)

const usage = `usage: im2000-smtpd [-l addr:port] [-c n] [-t seconds] [-tls]
  SMTP submission into IM2000 archives: one session on stdin/stdout under
  tcpserver, or with -l as a listener. Settings are in $IM2000_CONF.
  -l addr:port  listen on addr:port instead of serving stdin/stdout
  -c n          at most n sessions at once with -l (default 40)
  -t seconds    close a session idle for this long (default 300)
  -tls          speak TLS from the first byte (port 465 style); without it,
                STARTTLS is offered when tlscert and tlskey are set
  -h            show this help`

type config struct {
	conf     conf.Dir
	settings conf.Local
	remote   bool
	checker  *auth.Checker
	// failures delays failed AUTHs per client address with a remote store
	// (limits.go; kept in sessiondir, nil without it).
	failures *auth.Limiter
	limits   session.Limits
	maxRcpt  int
	tls      *tls.Config // nil: no certificate, no STARTTLS
	// clearAuth is the setting cleartextauth: AUTH over cleartext from
	// anywhere, not only loopback (tls.go).
	clearAuth bool
}

func main() {
	f := session.ParseTextFlags("im2000-smtpd", usage, os.Args[1:], 300*time.Second)
	d := conf.FromEnv()
	// The certificate is loaded once: lib/tlsconf reloads the pair itself
	// (on SIGHUP, and when its files change).
	tlsCfg, err := loadTLS(d, f.TLS)
	if err != nil {
		logFatal(fail.Temp(err))
	}
	c, err := load(d, tlsCfg)
	if err != nil {
		logFatal(fail.Temp(err))
	}
	g := generations(d, f, c)
	if f.Listen != "" {
		listen(f, c, g)
		return
	}
	// Under tcpserver: one session, this process's; its settings are read
	// afresh by the next.
	if err := session.ServeOneGeneration(c, g); err != nil {
		logFatal(err)
	}
}

// newServer is a go-smtp server whose sessions use c. A listener makes a
// new one for each SIGHUP that loads (serve.go): the sessions already
// begun keep the server, and the settings, they began with.
func newServer(c *config, timeout time.Duration) *smtp.Server {
	srv := smtp.NewServer(smtp.BackendFunc(func(conn *smtp.Conn) (smtp.Session, error) {
		lc := limited(conn.Conn()) // always one: every connection is admitted
		return &client{cfg: c, peer: conn.Conn().RemoteAddr(), conn: lc, smtp: conn}, nil
	}))
	srv.Domain = c.settings.Me
	srv.MaxMessageBytes = c.settings.MaxMessage
	srv.MaxRecipients = c.maxRcpt
	srv.MaxLineLength = 1000 // RFC 5321 4.5.3.1.6
	srv.ReadTimeout = timeout
	srv.WriteTimeout = timeout
	// go-smtp's own rule would refuse AUTH in cleartext even on loopback;
	// this server's rule (TLS, loopback, or cleartextauth) is in
	// client.passwordOK, which hides AUTH from EHLO and answers 538.
	srv.AllowInsecureAuth = true
	srv.TLSConfig = c.tls
	srv.ErrorLog = logger{}
	return srv
}

// load reads every setting smtpd uses (at start, and on SIGHUP with -l);
// tlsCfg is the certificate loaded once (loadTLS).
func load(d conf.Dir, tlsCfg *tls.Config) (*config, error) {
	l, err := d.Local()
	if err != nil {
		return nil, err
	}
	c := &config{conf: d, settings: *l, tls: tlsCfg}
	if c.clearAuth, err = tlsconf.ClearAuth(d); err != nil {
		return nil, err
	}
	if c.maxRcpt, err = store.MaxRcpt(d); err != nil { // the one rule, shared with im2000-submitd
		return nil, err
	}
	if c.remote, err = remote.Configured(d); err != nil {
		return nil, err
	}
	// Sessions are counted per address in the store's root; with a remote
	// store, in sessiondir if set (else, under tcpserver, not at all).
	state, err := d.Str("sessiondir")
	if err != nil {
		return nil, err
	}
	if !c.remote {
		root, err := d.Store()
		if err != nil {
			return nil, err
		}
		if c.checker, err = auth.FromConf(d, filepath.Join(root, ".authfail")); err != nil {
			return nil, err
		}
		state = filepath.Join(root, ".sessions")
	}
	dir := ""
	if state != "" {
		dir = filepath.Join(state, "smtp")
		if c.remote {
			if c.failures, err = auth.LimiterFromConf(d, filepath.Join(state, ".authfail")); err != nil {
				return nil, err
			}
		}
	}
	if c.limits, err = session.LimitsFromConf(d, dir); err != nil {
		return nil, err
	}
	return c, nil
}

// logger takes go-smtp's messages. go-smtp stops a panic in a command
// (421 to the client, the session closed) and logs "panic serving ADDR:
// VALUE\nSTACK"; that is an alert here, on one line with a short stack.
type logger struct{}

func (logger) Printf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	if strings.HasPrefix(format, "panic serving") {
		first, stack, _ := strings.Cut(msg, "\n")
		logPanic(strings.TrimPrefix(first, "panic serving "), shortStack(stack))
		return
	}
	logLibrary(msg)
}

// shortStack keeps the functions of a debug.Stack text below the panic,
// as fail.Panicked shows them.
func shortStack(stack string) string {
	lines := strings.Split(stack, "\n")
	start := 0
	for i, l := range lines {
		if strings.HasPrefix(l, "panic(") {
			start = i
		}
	}
	var at []string
	for i := start + 2; i+1 < len(lines) && len(at) < 6; i += 2 {
		fn := strings.TrimSpace(lines[i])
		if strings.HasPrefix(fn, "created by ") {
			break
		}
		if strings.HasPrefix(fn, "runtime.") {
			continue
		}
		if j := strings.LastIndex(fn, "("); j > 0 {
			fn = fn[:j]
		}
		file := strings.TrimSpace(lines[i+1])
		if j := strings.LastIndex(file, " +0x"); j > 0 {
			file = file[:j]
		}
		at = append(at, fmt.Sprintf("%s (%s)", fn[strings.LastIndex(fn, "/")+1:], file[strings.LastIndex(file, "/")+1:]))
	}
	return strings.Join(at, " < ")
}

func (logger) Println(v ...any) { logLibrary(fmt.Sprint(v...)) }

func netipOf(a net.Addr) netip.Addr {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.AddrPort().Addr()
	}
	return netip.Addr{}
}
