package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"im2000/lib/tlsconf"
)

// maxRelayRead bounds what a smarthost may send in one session: its
// replies to a transaction are a few lines, and go-smtp's client bounds
// each line but not a multi-line reply as a whole (an endless "220-"
// greeting grew notifyd's heap to 2.4 GB in 20 s in a hostile review).
const maxRelayRead = 1 << 20

// errRelayFlood: the relay sent more than maxRelayRead; the hand-off
// fails as temporary (noserver), like a broken connection.
var errRelayFlood = errors.New("the relay sent over 1 MiB in one session")

// relayConn is the connection to the smarthost as go-smtp's client sees
// it: reads stop after maxRelayRead octets, and no deadline it sets can be
// later than the session's own. go-smtp sets its own deadline around
// every command (5 minutes by default) and clears it after, which would
// otherwise replace the one send gave the session.
type relayConn struct {
	net.Conn
	deadline time.Time // the session's; zero: none
	read     int
	// hello is the name to greet with: go-smtp's STARTTLS constructor
	// sends "EHLO localhost" before TLS, and takes no name; its first
	// write, that EHLO, is rewritten with this one, and so is the second
	// when it is the "HELO localhost" go-smtp falls back to after a 500 or
	// 502 to the EHLO (second hostile review of issue 20). go-smtp
	// v0.25 has no exported StartTLS to call after Hello(me), so the
	// constructor and this rewrite stay; after STARTTLS every write is TLS
	// records, and Hello(me) greets inside TLS.
	hello  string
	writes int // the writes so far, up to 2
}

// greeting is go-smtp's greeting with its own name at write n (1: the
// EHLO; 2: the HELO after an EHLO refused), and what it becomes.
func (c *relayConn) greeting(p []byte, n int) ([]byte, bool) {
	switch {
	case c.hello == "":
		return nil, false
	case n == 1 && string(p) == "EHLO localhost\r\n":
		return []byte("EHLO " + c.hello + "\r\n"), true
	case n == 2 && string(p) == "HELO localhost\r\n":
		return []byte("HELO " + c.hello + "\r\n"), true
	}
	return nil, false
}

func (c *relayConn) Read(p []byte) (int, error) {
	if c.read >= maxRelayRead {
		return 0, errRelayFlood
	}
	if len(p) > maxRelayRead-c.read {
		p = p[:maxRelayRead-c.read]
	}
	n, err := c.Conn.Read(p)
	c.read += n
	return n, err
}

func (c *relayConn) Write(p []byte) (int, error) {
	if c.writes < 2 {
		c.writes++
		if q, ok := c.greeting(p, c.writes); ok {
			if _, err := c.Conn.Write(q); err != nil {
				return 0, err
			}
			return len(p), nil
		}
		c.writes = 2 // anything else first: no greeting of go-smtp's follows
	}
	return c.Conn.Write(p)
}

func (c *relayConn) clamp(t time.Time) time.Time {
	if !c.deadline.IsZero() && (t.IsZero() || t.After(c.deadline)) {
		return c.deadline
	}
	return t
}

func (c *relayConn) SetDeadline(t time.Time) error { return c.Conn.SetDeadline(c.clamp(t)) }

func (c *relayConn) SetReadDeadline(t time.Time) error {
	return c.Conn.SetReadDeadline(c.clamp(t))
}

func (c *relayConn) SetWriteDeadline(t time.Time) error {
	return c.Conn.SetWriteDeadline(c.clamp(t))
}

// dial opens a session with the relay, greeting it with me (the me
// setting) before and inside TLS: STARTTLS when it offers it, else
// cleartext on a second connection, then AUTH PLAIN when smarthostuser is
// set, never over cleartext but to a loopback address. Every read of the
// session is bounded (relayConn) and no deadline go-smtp sets outlasts the
// session's. Any error is the session's (sessionState): nothing of it
// concerns the message or its recipients.
//
// TLS is remembered as for the agents (DESIGN-NOTES.md, "TLS: clients"),
// once the handshake is over and the certificate verified (tls.Client
// shakes hands at the first command inside TLS, the EHLO): a smarthost
// once reached over verified TLS, or named in tlsrequire, that offers no
// STARTTLS is refused as a downgrade (tlsconf.ErrDowngrade, recorded as
// tlsdowngrade) instead of being given the mail in clear.
func (s *smarthost) dial(ctx context.Context, cfg *config) (*smtp.Client, *relayConn, error) {
	var dialer net.Dialer
	deadline, _ := ctx.Deadline()
	connect := func() (*relayConn, error) {
		conn, err := dialer.DialContext(ctx, "tcp", s.addr)
		if err != nil {
			return nil, err
		}
		conn.SetDeadline(deadline)
		return &relayConn{Conn: conn, deadline: deadline, hello: s.me}, nil
	}
	rc, err := connect()
	if err != nil {
		return nil, nil, err
	}
	var tc *tls.Config
	var tcl *tlsconf.Client
	if cfg.loc != nil && cfg.loc.TLS != nil {
		tcl = cfg.loc.TLS
		tc = tcl.Config(s.host)
	} else {
		tc = &tls.Config{ServerName: s.host, MinVersion: tls.VersionTLS12}
	}
	secure := true
	c, err := smtp.NewClientStartTLS(rc, tc)
	if err != nil && strings.Contains(err.Error(), "support STARTTLS") {
		if why, required := tcl.Required("smtp", s.host); required {
			return nil, nil, fmt.Errorf("%w: %s offers no STARTTLS (%s)", tlsconf.ErrDowngrade, s.host, why)
		}
		secure = false
		if rc, err = connect(); err != nil {
			return nil, nil, err
		}
		c = smtp.NewClient(rc)
	}
	if err != nil && secure {
		return nil, nil, err
	}
	c.CommandTimeout, c.SubmissionTimeout = cfg.timeout, time.Until(deadline)
	// After STARTTLS go-smtp has not greeted: this EHLO is the first
	// command inside TLS, and drives the handshake.
	if err := c.Hello(s.me); err != nil {
		c.Close()
		return nil, nil, err
	}
	if secure {
		if st, ok := c.TLSConnectionState(); !ok || !st.HandshakeComplete {
			c.Close()
			return nil, nil, errors.New("the TLS handshake with the smarthost did not complete")
		}
		if err := tcl.Reached("smtp", s.host); err != nil {
			logTLSNotRemembered(s.host, err)
		}
	}
	if s.user == "" {
		return c, rc, nil
	}
	if !secure && !onLoopback(rc) {
		c.Close()
		return nil, nil, errNoTLS
	}
	if err := c.Auth(sasl.NewPlainClient("", s.user, s.pass)); err != nil {
		c.Close()
		return nil, nil, err
	}
	return c, rc, nil
}

// onLoopback says whether the relay's connection is to a loopback
// address: the admin's own MTA on this host, where no one sits on the
// path to read AUTH or to strip or inject what its EHLO offers.
func onLoopback(rc *relayConn) bool {
	a, ok := rc.RemoteAddr().(*net.TCPAddr)
	return ok && isLoopback(a.IP)
}

// isLoopback is net.IP.IsLoopback; a variable for the tests, whose relays
// all listen on loopback, to stand in for another host over cleartext.
var isLoopback = net.IP.IsLoopback
