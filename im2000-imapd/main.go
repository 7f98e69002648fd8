// Command im2000-imapd lets an IMAP mail client read IM2000 mail: one
// mailbox, INBOX, made of the user's notifications (taken from the user's
// agent over RNAQP into lib/inbox's pending queue), each message fetched
// from its sender's store when the client asks for it, and silenced there
// when the client expunges it. See man/im2000-imapd.8.
//
// The protocol is github.com/emersion/go-imap/v2's imapserver; this
// program is its Session (session.go, fetch.go, update.go) over a state
// file per user (state.go) and a body cache (cache.go).
package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"im2000/lib/auth"
	"im2000/lib/conf"
	"im2000/lib/fail"
	"im2000/lib/inbox"
	"im2000/lib/session"
	"im2000/lib/tlsconf"
)

const usage = `usage: im2000-imapd [-l addr:port] [-c n] [-t seconds] [-tls]
  IMAP access (one mailbox, INBOX) to IM2000 mail for the accounts of the
  agent named in the rna file of $IM2000_CONF: one session on stdin/stdout
  under tcpserver, or with -l as a listener.
  -l addr:port  listen on addr:port instead of serving stdin/stdout
  -c n          at most n sessions at once with -l (default 40)
  -t seconds    close a session idle for this long (default 1800)
  -tls          speak TLS from the first byte (port 993 style); without it,
                STARTTLS is offered when tlscert and tlskey are set
  -h            show this help`

type config struct {
	conf     conf.Dir
	rna      string
	state    string
	timeout  time.Duration
	limits   session.Limits
	failures *auth.Limiter // nil: no delays (the fuzz test)
	tls      *tls.Config
	implicit bool
	// clearAuth is the setting cleartextauth (tlsconf.PasswordOK).
	clearAuth  bool
	poll       time.Duration
	cacheBytes int64
	// check asks the agent whether pass is user's password; take moves
	// the user's notifications from the agent into the pending queue and
	// returns the user's inbox. The fuzz test puts both in memory.
	check func(user, pass string) error
	open  func(dir, user, pass string) (mailbox, error)
	take  func(mb mailbox, user, pass string) error
	// alert reports a panic the IMAP library recovered in a handler
	// (logged as an alert by default; the fuzz test fails on it).
	alert func(msg string)
}

func main() {
	f := session.ParseTextFlags("im2000-imapd", usage, os.Args[1:], 1800*time.Second)
	d := conf.FromEnv()
	c, err := load(d, f)
	if err != nil {
		logFatal(fail.Temp(err))
	}
	// Each session keeps the configuration it began with; with -l, SIGHUP
	// loads the settings again for the sessions to come, and settings that
	// do not load leave those in force.
	err = session.RunText(f, c, session.TextServer[*config]{
		Busy:     "* BYE [UNAVAILABLE] too many sessions, try again later\r\n",
		BusyAddr: "* BYE [UNAVAILABLE] too many sessions from your address, try again later\r\n",
		Load:     func() (*config, error) { return load(d, f) },
		Limits:   func(c *config) session.Limits { return c.limits },
		Serve:    (*config).serve,
		Log:      textLog(d),
	})
	if err != nil {
		logFatal(fail.Temp(err))
	}
}

// load reads every setting imapd uses (at start, and on SIGHUP with -l),
// the certificate among them.
func load(d conf.Dir, f session.Flags) (*config, error) {
	c := &config{conf: d, timeout: f.Timeout, implicit: f.TLS}
	c.check, c.open, c.take = c.checkPassword, c.openInbox, c.takeNew
	s, err := inbox.LoadServer(d, "imapstate", "the users' mailboxes", "imap")
	c.rna, c.state, c.limits, c.failures, c.clearAuth = s.RNA, s.State, s.Limits, s.Failures, s.ClearAuth
	var poll, cache int64
	if err == nil {
		poll, err = d.Num("imappoll")
		if err == nil && poll < 1 {
			err = fmt.Errorf("%s is %d: want at least 1 second", d.Path("imappoll"), poll)
		}
	}
	if err == nil {
		cache, err = d.Num("imapcachebytes")
		if err == nil && cache < 0 {
			err = fmt.Errorf("%s is %d: want at least 0", d.Path("imapcachebytes"), cache)
		}
	}
	c.poll, c.cacheBytes = time.Duration(min(poll, 1<<20))*time.Second, cache
	if err == nil {
		c.tls, err = tlsconf.ServerConfig(d, logTLS)
		if errors.Is(err, tlsconf.ErrNoCert) && !f.TLS {
			c.tls, err = nil, nil
		}
	}
	return c, err
}

// caps are the capabilities offered: IMAP4rev1 and IMAP4rev2 as the
// library has them, with MOVE, UIDPLUS, NAMESPACE and IDLE (which the
// library lists itself once a client is logged in).
var caps = imap.CapSet{
	imap.CapIMAP4rev1: {}, imap.CapIMAP4rev2: {},
	imap.CapNamespace: {}, imap.CapUIDPlus: {}, imap.CapMove: {},
	imap.CapStatusSize: {}, imap.CapAppendLimit: {},
}

// serve runs one IMAP session on conn. Each connection gets a server of
// its own, on a listener that hands out this one connection: whether a
// password may be taken in cleartext depends on the client's address
// (tlsconf.PasswordOK), and the library decides it per server. A panic in
// a handler ends the session (the library recovers it), never the server.
func (c *config) serve(conn net.Conn, peer string) {
	start := time.Now()
	lc := &limitConn{Conn: conn, c: c, start: start, closed: make(chan struct{})}
	var nc net.Conn = lc
	if c.implicit {
		nc = tls.Server(lc, c.tls)
	}
	s := &imapSession{config: c, peer: peer, start: start, conn: lc}
	// The literal guard reads the cleartext: above the TLS of -tls, below
	// the library's STARTTLS (literal.go).
	guard := &literalGuard{Conn: nc}
	guard.tls = func() bool { return s.imapConn != nil && s.imapConn.NetConn() != net.Conn(guard) }
	nc = guard
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(ic *imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			s.imapConn = ic
			return &serialSession{s: s}, nil, nil // serial.go: one goroutine at a time
		},
		Caps:      caps,
		Logger:    logger{peer, c.alert},
		TLSConfig: c.startTLS(),
		// Under -tls the library sees the guard, not its *tls.Conn: the
		// connection is TLS all the same.
		InsecureAuth: tlsconf.PasswordOK(c.implicit, session.PeerAddr(peer), session.LocalUser(conn), c.clearAuth),
	})
	srv.Serve(&oneListener{conn: nc, done: lc.closed})
}

// startTLS is the TLS configuration STARTTLS uses: none under -tls (the
// session is in TLS already) or without a certificate.
func (c *config) startTLS() *tls.Config {
	if c.implicit {
		return nil
	}
	return c.tls
}

// logger prefixes the library's own log lines (a failed command read, a
// panic) with the program's name and the peer; a panic is an alert.
type logger struct {
	peer  string
	alert func(string)
}

func (l logger) Printf(format string, a ...any) {
	msg := l.peer + ": " + fmt.Sprintf(format, a...)
	if strings.HasPrefix(format, "panic") {
		if l.alert != nil {
			l.alert(msg)
			return
		}
		logLibraryPanic(msg)
		return
	}
	logLibrary(l.peer, fmt.Sprintf(format, a...))
}

// oneListener hands out one connection, then waits until it is closed
// and ends the library's accept loop.
type oneListener struct {
	conn net.Conn
	done chan struct{}
	used bool
}

func (l *oneListener) Accept() (net.Conn, error) {
	if !l.used {
		l.used = true
		return l.conn, nil
	}
	<-l.done
	return nil, net.ErrClosed
}

func (l *oneListener) Close() error   { return nil }
func (l *oneListener) Addr() net.Addr { return l.conn.LocalAddr() }
