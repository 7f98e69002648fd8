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
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"im2000/lib/addr"
	"im2000/lib/auth"
	"im2000/lib/conf"
	"im2000/lib/fail"
	"im2000/lib/mailmsg"
	"im2000/lib/msgid"
	"im2000/lib/remote"
	"im2000/lib/session"
	"im2000/lib/store"
	"im2000/lib/submit"
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
	if f.Listen != "" {
		listen(d, f, c)
		return
	}
	// Under tcpserver: one session, this process's; its settings are read
	// afresh by the next.
	conn, err := net.FileConn(os.Stdin)
	if err != nil {
		logFatal(fail.Perm(fmt.Errorf("stdin is not a socket: run under tcpserver, or with -l")))
	}
	lc, ok := admit(conn, c.limits, c.limits.SlotsFor(false))
	if !ok {
		return
	}
	one := &oneConn{conn: lc, closed: make(chan struct{}), tls: implicitConfig(c, f.TLS)}
	lc.OnRelease(func() { close(one.closed) })
	srv := newServer(c, f.Timeout)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() { logStopping(<-sig); srv.Close() }()
	if err := srv.Serve(one); err != nil && !errors.Is(err, smtp.ErrServerClosed) && !errors.Is(err, errDone) {
		logFatal(fail.Temp(err))
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

// client is one SMTP connection.
type client struct {
	cfg      *config
	conn     *session.LimitedConn
	peer     net.Addr
	smtp     *smtp.Conn
	account  string
	password string
	rcpts    []addr.Mailbox
}

// AuthMechanisms is what EHLO offers: nothing where a password may not
// be taken (passwordOK), so that a client starts TLS first.
func (s *client) AuthMechanisms() []string {
	if !s.passwordOK() {
		return nil
	}
	return []string{sasl.Plain, sasl.Login}
}

func (s *client) Auth(mech string) (sasl.Server, error) {
	if !s.passwordOK() {
		logCleartext(s.peer)
		return nil, errEncryptionRequired
	}
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(func(identity, user, pass string) error {
			if identity != "" && identity != user {
				return smtp.ErrAuthFailed
			}
			return s.check(user, pass)
		}), nil
	case sasl.Login:
		return &loginServer{check: s.check}, nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

// check passes AUTH through to the store's account check: the passwords
// file (with its growing delays), or the remote store's MSOAP.
func (s *client) check(user, pass string) error {
	// The SMTP gateway's account never logs in, whatever its password:
	// readers show its messages' first line as "via SMTP from" it
	// (gatewayaccount in im2000-conf(5)).
	if gw, err := s.cfg.conf.Str("gatewayaccount"); err != nil || strings.EqualFold(user, gw) {
		return smtp.ErrAuthFailed
	}
	if s.cfg.remote {
		if err := s.checkRemote(user, pass); err != nil {
			return err
		}
	} else {
		ip := netipOf(s.peer)
		ok, err := s.cfg.checker.Check(ip, user, pass)
		if err != nil {
			logAuthUnchecked(s.peer, user, err)
			return errTempAuth
		}
		if !ok {
			logAuthFailed(s.peer, user)
			return smtp.ErrAuthFailed
		}
	}
	s.account, s.password = user, pass
	if s.conn != nil {
		s.conn.Authenticated() // from now on, the session's lifetime is its limit
	}
	logAuthenticated(s.peer, user)
	return nil
}

func (s *client) Mail(from string, _ *smtp.MailOptions) error {
	if s.account == "" {
		return smtp.ErrAuthRequired
	}
	return nil // the sender recorded is always the account's own address
}

func (s *client) Rcpt(to string, _ *smtp.RcptOptions) error {
	if s.account == "" {
		return smtp.ErrAuthRequired
	}
	a, err := addr.Parse(to)
	if err != nil {
		return &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 1, 3}, Message: fmt.Sprintf("Bad address %q: %v", to, err)}
	}
	s.rcpts = append(s.rcpts, a) // the store checks it with the message, at DATA
	return nil
}

func (s *client) Data(r io.Reader) error {
	defer io.Copy(io.Discard, r) // go-smtp wants it consumed, whatever happens
	if s.account == "" {
		return smtp.ErrAuthRequired
	}
	msg, err := mailmsg.Read(bufio.NewReaderSize(r, 64<<10))
	if err != nil {
		return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "Message refused: " + err.Error()}
	}
	settings := s.cfg.settings
	settings.Account = s.account
	from, err := addr.Parse(s.account + "@" + settings.Me)
	if err != nil {
		return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 1, 7}, Message: "Your account has no valid address here"}
	}
	id, err := submit.Submit(&submit.Request{Conf: s.cfg.conf, Settings: &settings, Recipients: s.rcpts,
		Msg: msg, From: from, Password: s.password, NotRecorded: func(id msgid.ID, log string, err error) {
			logNotRecorded(s.peer, s.account, id, log, err)
		}})
	if err != nil {
		logNotStored(s.peer, s.account, err)
		return dataError(err)
	}
	logStored(s.peer, s.account, id.String(), len(s.rcpts))
	// A 250 as an *SMTPError is how go-smtp lets the reply say more than
	// "queued": where the message is, and that no bounce will ever come.
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0},
		Message: fmt.Sprintf("OK: stored in your archive as %s; its delivery status is there (im2000-status), no bounce will come", id)}
}

// dataError explains a refused message. IM2000 checks the envelope together
// with the message, so refusals of recipients come only now, at DATA.
func dataError(err error) error {
	perm := fail.Code(err) == fail.Permanent
	switch {
	case errors.Is(err, smtp.ErrTooLongLine):
		return &smtp.SMTPError{Code: 500, EnhancedCode: smtp.EnhancedCode{5, 5, 2}, Message: "Line longer than 1000 octets (RFC 5321); message refused"}
	case errors.Is(err, store.ErrTooLarge):
		return &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 3, 4}, Message: "Message too large for the store"}
	case errors.Is(err, store.ErrQuota):
		return &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 2, 2}, Message: "Your archive is over its quota; try again when old messages have expired"}
	case errors.Is(err, submit.ErrSender):
		msg := err.Error()
		if len(msg) > 400 { // a reply line has at most 512 octets
			msg = strings.ToValidUTF8(msg[:400], "") + "..."
		}
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Not stored: " + msg}
	case errors.Is(err, submit.ErrNotPermitted), errors.Is(err, store.ErrNoRecipients), perm:
		return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1},
			Message: "Not stored (IM2000 checks recipients with the message, so this comes at DATA): " + err.Error()}
	}
	return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Not stored, try again later: " + err.Error()}
}

func (s *client) Reset()        { s.rcpts = nil }
func (s *client) Logout() error { return nil }

// loginServer is SASL LOGIN (go-sasl has only its client side).
type loginServer struct {
	check func(user, pass string) error
	user  string
	step  int
}

func (l *loginServer) Next(response []byte) ([]byte, bool, error) {
	l.step++
	switch l.step {
	case 1:
		if len(response) > 0 { // an initial response carries the user name
			l.user, l.step = string(response), 2
			return []byte("Password:"), false, nil
		}
		return []byte("Username:"), false, nil
	case 2:
		l.user = string(response)
		return []byte("Password:"), false, nil
	}
	return nil, true, l.check(l.user, string(response))
}

// oneConn is a listener that yields the tcpserver socket once, then ends
// the server when that session closes (closed, closed by the conn's
// release).
type oneConn struct {
	tls    *tls.Config // -tls: the connection is TLS from its first byte
	conn   *session.LimitedConn
	given  bool
	closed chan struct{}
}

var errDone = errors.New("session over")

func (o *oneConn) Accept() (net.Conn, error) {
	if !o.given {
		o.given = true
		if o.tls != nil {
			return implicitTLS(o.conn, o.tls), nil
		}
		return o.conn, nil
	}
	<-o.closed
	return nil, errDone
}

func (o *oneConn) Close() error   { return nil }
func (o *oneConn) Addr() net.Addr { return o.conn.LocalAddr() }

func netipOf(a net.Addr) netip.Addr {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.AddrPort().Addr()
	}
	return netip.Addr{}
}
