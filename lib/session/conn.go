package session

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// This is the one place of the session limits for servers run by a
// library that sets its own read deadlines (go-smtp, in im2000-smtpd and
// im2000-gatewayd): the connection it is given bends each deadline to the
// Limits. Each program keeps its own answers and log lines (AdmitLog).

// AdmitLog is how a program logs what Admit and LimitedConn decide; every
// field must be set.
type AdmitLog struct {
	NotCounted func(peer net.Addr, err error) // the slots failed; let in
	Refused    func(peer net.Addr, perAddr int)
	Limit      func(peer net.Addr, why string) // a read ended by a limit, once a session
}

// LimitedConn applies the session limits under a library that sets a read
// deadline before each line it reads (go-smtp): every deadline it sets is
// cut short by the session's lifetime and, until Authenticated, by the
// time it has for that. The library answers a deadline that passes and
// closes; this logs which limit it was.
type LimitedConn struct {
	net.Conn
	limits  Limits
	start   time.Time
	authed  atomic.Bool
	why     atomic.Value // string: the limit the read deadline now stands for
	logged  atomic.Bool
	release func()
	once    sync.Once
	onLimit func(net.Addr, string)
}

func newLimitedConn(c net.Conn, l Limits, release func(), authed bool, onLimit func(net.Addr, string)) *LimitedConn {
	lc := &LimitedConn{Conn: c, limits: l, start: time.Now(), release: release, onLimit: onLimit}
	lc.authed.Store(authed)
	lc.why.Store("")
	lc.SetReadDeadline(time.Now().Add(time.Hour)) // go-smtp sets its own before the first read
	return lc
}

// Authenticated lifts authtimeout: from now on, the session's lifetime is
// its limit.
func (c *LimitedConn) Authenticated() { c.authed.Store(true) }

func (c *LimitedConn) SetReadDeadline(t time.Time) error {
	idle := time.Until(t)
	if t.IsZero() {
		idle = 100 * 365 * 24 * time.Hour
	}
	d, why := c.limits.Deadline(c.start, idle, c.authed.Load())
	c.why.Store(why)
	return c.Conn.SetReadDeadline(d)
}

func (c *LimitedConn) SetDeadline(t time.Time) error {
	c.Conn.SetWriteDeadline(t)
	return c.SetReadDeadline(t)
}

func (c *LimitedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if errors.Is(err, os.ErrDeadlineExceeded) && c.why.Load().(string) != "" && c.logged.CompareAndSwap(false, true) {
		c.onLimit(c.RemoteAddr(), c.why.Load().(string))
	}
	return n, err
}

// OnRelease adds f to what Close does once, after the slot is released;
// it must be called before the connection is shared.
func (c *LimitedConn) OnRelease(f func()) {
	release := c.release
	c.release = func() { release(); f() }
}

// Close releases the address's slot once and closes the connection.
func (c *LimitedConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}

// Admit takes a slot of c's address (slots nil: none counted). Over the
// cap, the client is sent refusal (within a second) and c closed. A
// failure to count lets the session in (the global cap and the lifetime
// still hold). authed starts the session as authenticated: for a server
// without AUTH, where authtimeout does not apply.
func Admit(c net.Conn, l Limits, slots Slots, refusal string, authed bool, log AdmitLog) (*LimitedConn, bool) {
	release, ok := takeSlot(c, IPOf(c.RemoteAddr()), slots, refusal,
		func(err error) { log.NotCounted(c.RemoteAddr(), err) },
		func() { log.Refused(c.RemoteAddr(), l.PerAddr) })
	if !ok {
		return nil, false
	}
	return newLimitedConn(c, l, release, authed, log.Limit), true
}

// IPOf is the IP address of a TCP peer, IPv4-mapped addresses unmapped;
// the zero Addr for any other (a Unix-domain socket).
func IPOf(a net.Addr) netip.Addr {
	return addrPort(a).Addr().Unmap()
}

// PeerAddr is the address a peer string ("ip" or "ip:port", as the text
// servers log a client) names; the zero Addr for anything else.
func PeerAddr(peer string) netip.Addr {
	if ap, err := netip.ParseAddrPort(peer); err == nil {
		return ap.Addr()
	}
	a, _ := netip.ParseAddr(peer)
	return a
}

// StdioPeerName names the client of a session on stdin/stdout for the log
// and the limits: StdioPeer's one rule (TCPREMOTEIP, else the socket stdin
// is), as an address without its port; a bare TCPREMOTEIP without
// TCPREMOTEPORT as it is; "" when there is none, which the limits count
// as one address.
func StdioPeerName(conn net.Conn) string {
	if remote, _ := StdioPeer(conn); remote.Addr().IsValid() {
		return remote.Addr().String()
	}
	return os.Getenv("TCPREMOTEIP")
}
