package session

import (
	"fmt"
	"net"
	"strings"
	"time"

	"im2000/lib/fail"
)

// The lines every server of this package logs, one function per kind of
// event, so that each line's format lives here and nowhere else.
// im2000-log(5) lists them (tests/logs_test.go holds it to that): each is
// "KIND: EVENT: PROTOCOL PEER: ...", KIND one of fail.Kinds, EVENT a fixed
// phrase. They go to Server.Log, which adds the program's name (a
// program's log.go passes fail.Log); a nil Log drops all but alerts.

func (srv *Server) logf(format string, a ...any) {
	if srv.Log != nil {
		srv.Log(format, a...)
	}
}

// logAlert: a panic stopped at a session's boundary (the value and where,
// from fail.Panicked). Never dropped, even without a Log.
func (srv *Server) logAlert(s *Session, v any) {
	msg := strings.TrimPrefix(fail.Panicked(fmt.Sprintf("%s session with %v", srv.Proto.Name, s.Remote), v), "panic in ")
	if srv.Log == nil {
		fail.Alert("panic in %s", msg)
		return
	}
	srv.Log("alert: panic in %s", msg)
}

func (srv *Server) logListening(addr net.Addr, maxConns int) {
	tls := ""
	if srv.TLS != nil {
		tls = " (TLS)"
	}
	srv.logf("info: listening: %s on %v%s, at most %d sessions", srv.Proto.Name, addr, tls, maxConns)
}

func (srv *Server) logShuttingDown() {
	srv.logf("info: shutting down: %s: sessions end after the command they are carrying out", srv.Proto.Name)
}

// logClosed: the client ended the session.
func (srv *Server) logClosed(s *Session, commands int) {
	srv.logf("info: closed: %s %v: by the client after %d commands", srv.Proto.Name, s.Remote, commands)
}

// logShutdown: a session ended by Shutdown (SIGTERM).
func (srv *Server) logShutdown(s *Session, commands int) {
	srv.logf("info: shutdown: %s %v: closed after %d commands, errorserviceshutdown sent", srv.Proto.Name, s.Remote, commands)
}

// logLimit: a session closed by its lifetime or its time to authenticate
// (why, from Limits.Deadline).
func (srv *Server) logLimit(s *Session, why string, commands int) {
	srv.logf("warning: limit: %s %v: %s, closed after %d commands", srv.Proto.Name, s.Remote, why, commands)
}

func (srv *Server) logTimeout(s *Session, idle time.Duration, commands int) {
	srv.logf("warning: timeout: %s %v: no PDU for %v, closed after %d commands", srv.Proto.Name, s.Remote, idle, commands)
}

// logTooLong: a PDU over -m; the session is closed, as the rest of the
// stream cannot be framed.
func (srv *Server) logTooLong(s *Session, err error) {
	srv.logf("warning: bad PDU: %s %v: %v, closed", srv.Proto.Name, s.Remote, err)
}

// logMalformed: a PDU that does not parse; answered errormalformedpdu.
func (srv *Server) logMalformed(s *Session, err error) {
	srv.logf("warning: bad PDU: %s %v: %v", srv.Proto.Name, s.Remote, err)
}

func (srv *Server) logNotCommand(s *Session) {
	srv.logf("warning: bad PDU: %s %v: a response where a command belongs", srv.Proto.Name, s.Remote)
}

// logLost: reading or writing the connection failed (reset, a write
// timeout).
func (srv *Server) logLost(s *Session, err error, commands int) {
	srv.logf("warning: lost: %s %v: %v, after %d commands", srv.Proto.Name, s.Remote, err, commands)
}

func (srv *Server) logAccept(err error) {
	srv.logf("warning: accept: %s: %v (out of descriptors? see ulimit -n and -c)", srv.Proto.Name, err)
}

func (srv *Server) logRefusedBusy(s *Session, n int) {
	srv.logf("warning: refused: %s %v: %d sessions already (-c), errorserviceshutdown sent", srv.Proto.Name, s.Remote, n)
}

func (srv *Server) logRefusedAddr(s *Session, n int) {
	srv.logf("warning: refused: %s %v: %d sessions from this address already (sessionsperaddr), errorserviceshutdown sent", srv.Proto.Name, s.Remote, n)
}

// logNotCounted: the slot files could not be used; the session is let in.
func (srv *Server) logNotCounted(s *Session, err error) {
	srv.logf("warning: not counted: %s %v: counting sessions per address: %v; let in", srv.Proto.Name, s.Remote, err)
}

func (srv *Server) logNoAddress() {
	srv.logf("warning: no remote address: %s: no TCPREMOTEIP, and stdin is not a TCP socket: limits per address shared by every such session", srv.Proto.Name)
}

func (srv *Server) logHandshake(s *Session, err error) {
	srv.logf("warning: TLS handshake failed: %s %v: %v", srv.Proto.Name, s.Remote, err)
}

func (srv *Server) logNoNetConn(s *Session) {
	srv.logf("alert: TLS on no net.Conn: %s %v: closed", srv.Proto.Name, s.Remote)
}

func (srv *Server) logReconfigured(l Limits, clearAuth bool) {
	srv.logf("info: reconfigured: %s: sessionsperaddr %d, sessionlifetime %v, authtimeout %v, cleartextauth %v, for the sessions from now on",
		srv.Proto.Name, l.PerAddr, l.Lifetime, l.AuthTime, clearAuth)
}

// logTLS takes lib/tlsconf's lines about the certificate ("tls: ..."),
// which come without a kind: keeping the old pair because the new one
// does not load is a warning, a pair loaded is news. im2000-log(5) lists
// them.
func (srv *Server) logTLS(format string, a ...any) {
	line := fmt.Sprintf(strings.TrimPrefix(format, "tls: "), a...)
	if strings.HasPrefix(format, "tls: keeping") {
		srv.logf("warning: tls: %s", line)
		return
	}
	srv.logf("info: tls: %s", line)
}
