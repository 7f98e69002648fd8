package main

import (
	"crypto/tls"
	"net"

	"im2000/lib/session"
)

// tooMany is the answer to a connection over its address's cap.
const tooMany = "421 4.7.0 Too many sessions from your address, try again later\r\n"

// admitLog logs what session.Admit and session.LimitedConn decide.
var admitLog = session.AdmitLog{
	NotCounted: func(peer net.Addr, err error) {
		logNotCounted(peer, err)
	},
	Refused: func(peer net.Addr, n int) {
		logRefused(peer, n)
	},
	Limit: logLimit,
}

// admit takes a slot of c's address (session.Admit). The gateway's
// clients never authenticate, so a session is bounded by the idle timeout
// and by sessionlifetime (authtimeout does not apply).
func admit(c net.Conn, l session.Limits, slots session.Slots) (*session.LimitedConn, bool) {
	return session.Admit(c, l, slots, tooMany, true, admitLog)
}

// isTLS reports whether go-smtp's connection is TLS (after STARTTLS).
func isTLS(c net.Conn) bool {
	_, ok := c.(*tls.Conn)
	return ok
}
