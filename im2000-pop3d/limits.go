package main

import (
	"io"
	"net/netip"
	"time"

	"im2000/lib/fail"
	"im2000/lib/session"
)

// admit takes a slot of the client's address (the setting sessionsperaddr;
// counted in memory by a listener, in lock files under tcpserver, where
// each session is a process). Over the cap, the client is told so and the
// connection closed. A failure to count lets the session in: the global
// cap and the session's lifetime still hold.
func (c *config) admit(conn session.Conn, remote netip.Addr, peer string) (func(), bool) {
	if c.slots == nil {
		return func() {}, true
	}
	release, ok, err := c.slots.Acquire(remote)
	switch {
	case err != nil:
		fail.Warn("%s: counting sessions per address: %v", peer, err)
		return func() {}, true
	case !ok:
		fail.Warn("%s: refused: %d sessions from this address already", peer, c.limits.PerAddr)
		conn.SetWriteDeadline(time.Now().Add(time.Second))
		io.WriteString(conn, "-ERR [SYS/TEMP] too many sessions from your address, try again later\r\n")
		conn.Close()
	}
	return release, ok
}

// remoteAddr is the address a peer string ("ip" or "ip:port") names.
func remoteAddr(peer string) netip.Addr {
	if ap, err := netip.ParseAddrPort(peer); err == nil {
		return ap.Addr()
	}
	a, _ := netip.ParseAddr(peer)
	return a
}
