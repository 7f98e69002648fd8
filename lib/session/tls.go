package session

import (
	"crypto/tls"
	"errors"
	"net"
	"time"

	"im2000/lib/conf"
	"im2000/lib/tlsconf"
)

// handshake runs the server's TLS handshake on c (implicit TLS: the first
// bytes are the client's hello), bounded as a command is: by the idle
// timeout, cut short by the session's lifetime and the time it has to
// authenticate, counted from start. A client that stalls the handshake
// holds its slot no longer than one that stalls a command.
func (srv *Server) handshake(c Conn, s *Session, lim Limits, start time.Time) (Conn, bool) {
	nc, ok := c.(net.Conn)
	if !ok { // every Conn the package makes is a net.Conn
		srv.logNoNetConn(s)
		c.Close()
		return nil, false
	}
	deadline, _ := lim.Deadline(start, srv.Timeout, false)
	tc := tls.Server(nc, srv.TLS)
	nc.SetDeadline(deadline)
	// Serve tracks nc, so Shutdown sets its read deadline to now and the
	// handshake ends at once. Checked after the deadline is set, as
	// Serve's loop does, so that a Shutdown just before is not lost.
	err := errShuttingDown
	if !srv.closing.Load() {
		err = tc.Handshake()
	}
	if err != nil && srv.closing.Load() {
		err = errShuttingDown
	}
	if err != nil {
		srv.logHandshake(s, err)
		c.Close()
		return nil, false
	}
	st := tc.ConnectionState()
	s.TLS = &st
	return tc, true
}

// errShuttingDown is why a handshake that Shutdown cut short failed.
var errShuttingDown = errors.New("the service is shutting down")

// PasswordOK says whether the session may carry a password (MSOAP and
// RNAQP Authenticate): over TLS, from loopback, from a local user on pipes
// (LocalUser), or where the admin set cleartextauth (tlsconf.PasswordOK).
func (s *Session) PasswordOK() bool {
	return tlsconf.PasswordOK(s.TLS != nil, s.Remote.Addr(), s.localUser, s.clearAuth)
}

// loadTLS reads what Run needs of TLS from the configuration directory:
// the certificate and key when the flags ask for TLS (-tls), and
// cleartextauth.
func (srv *Server) loadTLS(f Flags) error {
	d := conf.FromEnv()
	var err error
	if srv.ClearAuth, err = tlsconf.ClearAuth(d); err != nil {
		return err
	}
	if f.TLS && srv.TLS == nil {
		if srv.TLS, err = tlsconf.ServerConfig(d, srv.logTLS); err != nil {
			return err
		}
	}
	return nil
}

// ClearAuthRefused is the log line (after the peer's address) of an
// Authenticate refused by PasswordOK; the client is answered
// errornotpermitted.
const ClearAuthRefused = "Authenticate refused: a password in cleartext from a non-loopback address (serve the TLS form with -tls and have clients use it, or set cleartextauth to 1 if the network is trusted)"
