package main

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"im2000/lib/fail"
	"im2000/lib/session"
)

// This is im2000-smtpd's limits.go without AUTH: the gateway's clients
// never authenticate, so a session is bounded by the idle timeout and by
// sessionlifetime (authtimeout does not apply). It is a copy rather than a
// shared package because the two programs are two trust boundaries and
// the copy is small; both follow lib/session.Limits.

// tooMany is the answer to a connection over its address's cap.
const tooMany = "421 4.7.0 Too many sessions from your address, try again later\r\n"

// limitedConn applies the session limits under go-smtp, which sets a read
// deadline before each line it reads: every deadline it sets is cut short
// by the session's lifetime. go-smtp answers a deadline that passes with
// 421 and closes; this logs which limit it was.
type limitedConn struct {
	net.Conn
	limits  session.Limits
	start   time.Time
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
	d, why := c.limits.Deadline(c.start, idle, true) // no AUTH here: authtimeout does not apply
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
}

func (l *addrListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if lc, ok := admit(c, l.limits, l.slots); ok {
			return lc, nil
		}
	}
}

// oneConn is a listener that yields the tcpserver socket once, then ends
// the server when that session closes.
type oneConn struct {
	conn   *limitedConn
	given  bool
	closed chan struct{}
}

var errDone = errors.New("session over")

func (o *oneConn) Accept() (net.Conn, error) {
	if !o.given {
		o.given = true
		return o.conn, nil
	}
	<-o.closed
	return nil, errDone
}

func (o *oneConn) Close() error   { return nil }
func (o *oneConn) Addr() net.Addr { return o.conn.LocalAddr() }

func netipOf(a net.Addr) netip.Addr {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}

// isTLS reports whether go-smtp's connection is TLS (after STARTTLS).
func isTLS(c net.Conn) bool {
	_, ok := c.(*tls.Conn)
	return ok
}
