package main

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"im2000/lib/fail"
	"im2000/lib/session"
)

// tooMany is the answer to a connection over its address's cap.
const tooMany = "421 4.7.0 Too many sessions from your address, try again later\r\n"

// limitedConn applies the session limits (lib/session.Limits) under
// go-smtp, which sets a read deadline before each line it reads: every
// deadline it sets is cut short by the session's lifetime and, until AUTH
// succeeds, by the time it has for that. go-smtp answers a deadline that
// passes with 421 and closes; this logs which limit it was.
type limitedConn struct {
	net.Conn
	limits  session.Limits
	start   time.Time
	authed  atomic.Bool
	why     atomic.Value // string: the limit the read deadline now stands for
	logged  atomic.Bool
	release func()
	once    sync.Once
}

func newLimitedConn(c net.Conn, l session.Limits, release func()) *limitedConn {
	lc := &limitedConn{Conn: c, limits: l, start: time.Now(), release: release}
	lc.why.Store("")
	lc.SetReadDeadline(time.Now().Add(time.Hour)) // go-smtp sets its own before the first read
	return lc
}

func (c *limitedConn) SetReadDeadline(t time.Time) error {
	idle := time.Until(t)
	if t.IsZero() {
		idle = 100 * 365 * 24 * time.Hour
	}
	d, why := c.limits.Deadline(c.start, idle, c.authed.Load())
	c.why.Store(why)
	return c.Conn.SetReadDeadline(d)
}

func (c *limitedConn) SetDeadline(t time.Time) error {
	c.Conn.SetWriteDeadline(t)
	return c.SetReadDeadline(t)
}

func (c *limitedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if errors.Is(err, os.ErrDeadlineExceeded) && c.why.Load().(string) != "" && c.logged.CompareAndSwap(false, true) {
		fail.Warn("%v: %s, closed", c.RemoteAddr(), c.why.Load())
	}
	return n, err
}

func (c *limitedConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}

// admit takes a slot of c's address. Over the cap, the client is told so
// and c closed. A failure to count lets the session in (the global cap
// and the lifetime still hold).
func admit(c net.Conn, l session.Limits, slots session.Slots) (*limitedConn, bool) {
	release := func() {}
	if slots != nil {
		r, ok, err := slots.Acquire(netipOf(c.RemoteAddr()))
		switch {
		case err != nil:
			fail.Warn("%v: counting sessions per address: %v", c.RemoteAddr(), err)
		case !ok:
			fail.Warn("%v: refused: %d sessions from this address already", c.RemoteAddr(), l.PerAddr)
			c.SetWriteDeadline(time.Now().Add(time.Second))
			io.WriteString(c, tooMany)
			c.Close()
			return nil, false
		default:
			release = r
		}
	}
	return newLimitedConn(c, l, release), true
}

// addrListener admits the connections of a listener (admit).
type addrListener struct {
	net.Listener
	limits session.Limits
	slots  session.Slots
	tls    *tls.Config // -tls: each connection is TLS from its first byte
}

func (l *addrListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if lc, ok := admit(c, l.limits, l.slots); ok {
			if l.tls != nil {
				return implicitTLS(lc, l.tls), nil
			}
			return lc, nil
		}
	}
}
