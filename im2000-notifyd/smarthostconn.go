package main

import (
	"errors"
	"net"
	"time"
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
