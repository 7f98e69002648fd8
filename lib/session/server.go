// Package session is the session machinery every IM2000 server and client
// shares (DESIGN.md section 3): length-framed DER PDUs, the client speaking
// first, an unauthenticated then authenticated state, forceabort and
// status on every response, and the error responses the engine itself
// gives: errormalformedpdu for what does not parse or is not a command,
// errorunexpectedcommand for a command out of place, errorcommandtimeout
// (then close) when a PDU does not arrive in time. A server runs one
// session on stdin/stdout under tcpserver (UCSPI), or listens itself.
package session

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"im2000/lib/wire"
)

// Reply is a handler's answer to one command.
type Reply struct {
	Status     uint64
	Body       wire.Body // nil means ResponseNull
	ForceAbort bool      // the transaction in progress is aborted
	Close      bool      // end the session after this response
}

// Handler carries out one session's commands.
type Handler interface {
	// Handle answers a command. Authentication has been checked by then:
	// a protocol with authentication only passes its authenticate command
	// to an unauthenticated session.
	Handle(s *Session, cmd wire.Body) Reply
	// Abort drops any transaction in progress; nothing of it may remain.
	// It is called after every forceabort and when the session ends.
	Abort(s *Session)
}

// Session is one client's connection.
type Session struct {
	Proto   *wire.Protocol
	Remote  netip.AddrPort
	Local   netip.AddrPort
	Account string // set by the handler when authentication succeeds
	// TLS is the session's TLS state; nil for a cleartext session.
	TLS       *tls.ConnectionState
	clearAuth bool // the setting cleartextauth (PasswordOK)
	localUser bool // on pipes, no peer named (LocalUser)
}

// Server runs sessions of one protocol.
type Server struct {
	Proto      *wire.Protocol
	Timeout    time.Duration // for each PDU to arrive, from the end of the last response
	MaxPDU     int
	MaxConns   int // listener mode: sessions at once
	Limits     Limits
	NewHandler func(*Session) Handler
	Log        func(format string, a ...any)
	// TLS, when set, makes every session implicit TLS (the -tls flag;
	// tls.go). ClearAuth is the setting cleartextauth (Session.PasswordOK).
	TLS       *tls.Config
	ClearAuth bool

	closing atomic.Bool
	mu      sync.Mutex // guards what follows
	slots   Slots      // from Limits, for the mode (Run)
	live    *live      // Reconfigure's; nil: Limits and ClearAuth
	listen  bool       // Run's mode
	conns   map[Conn]bool
	wg      sync.WaitGroup
}

// Conn is what a session runs over: a socket, or stdin/stdout.
type Conn interface {
	io.ReadWriteCloser
	SetReadDeadline(time.Time) error
	SetWriteDeadline(time.Time) error
}

func (srv *Server) write(c Conn, r Reply) error {
	body := r.Body
	if body == nil {
		body = wire.Null{}
	}
	c.SetWriteDeadline(time.Now().Add(srv.Timeout))
	return wire.WriteFrame(c, wire.MarshalResponse(r.ForceAbort, r.Status, body))
}

// Serve runs one session on c until the client closes it, a timeout, or
// a reply that closes it. A panic in the handler ends the session (with
// errorinternalproblem when it happened in a command) and an alert in the
// log, never the server.
func (srv *Server) Serve(c Conn, s *Session) {
	// The settings in force when the session began hold to its end,
	// whatever a Reconfigure meanwhile.
	lim, clearAuth := srv.current()
	s.Proto, s.clearAuth = srv.Proto, clearAuth
	start := time.Now()
	// Tracked and guarded from the first byte: Shutdown wakes a session
	// still in its TLS handshake as it wakes one waiting for a command, and
	// a panic in the handshake (in GetCertificate, say) ends this session,
	// not the process. raw is what is tracked: a deadline set on it holds
	// for the TLS connection over it.
	raw := c
	srv.track(raw, true)
	defer srv.track(raw, false)
	defer func() {
		if v := recover(); v != nil {
			srv.logAlert(s, v)
			c.Close()
		}
	}()
	if srv.TLS != nil {
		var ok bool
		if c, ok = srv.handshake(c, s, lim, start); !ok {
			return
		}
	}
	h := srv.NewHandler(s)
	defer func() {
		h.Abort(s)
		c.Close()
	}()
	st := srv.Proto.Status
	r := bufio.NewReaderSize(c, 64<<10)
	commands := 0
	for {
		// The idle timeout, cut short by the session's lifetime and, before
		// authentication, by the time it has for that (Limits).
		deadline, why := lim.Deadline(start, srv.Timeout, srv.Proto.Auth == nil || s.Account != "")
		c.SetReadDeadline(deadline)
		// Checked after the deadline is set, so that a Shutdown between the
		// two cannot be lost.
		if srv.closing.Load() {
			srv.write(c, Reply{Status: st.Shutdown, ForceAbort: true})
			srv.logShutdown(s, commands)
			return
		}
		frame, err := wire.ReadFrame(r, srv.MaxPDU)
		if err != nil {
			switch {
			case err == io.EOF:
				srv.logClosed(s, commands)
			case errors.Is(err, os.ErrDeadlineExceeded) && srv.closing.Load():
				srv.write(c, Reply{Status: st.Shutdown, ForceAbort: true})
				srv.logShutdown(s, commands)
			case errors.Is(err, os.ErrDeadlineExceeded) && why != "":
				srv.write(c, Reply{Status: st.Timeout, ForceAbort: true})
				srv.logLimit(s, why, commands)
			case errors.Is(err, os.ErrDeadlineExceeded):
				srv.write(c, Reply{Status: st.Timeout, ForceAbort: true})
				srv.logTimeout(s, srv.Timeout, commands)
			case errors.Is(err, wire.ErrTooLong):
				srv.write(c, Reply{Status: st.Malformed, ForceAbort: true})
				srv.logTooLong(s, err)
			default:
				srv.logLost(s, err, commands)
			}
			return
		}
		commands++
		rep := srv.handle(h, s, frame)
		if rep.ForceAbort {
			h.Abort(s)
		}
		if err := srv.write(c, rep); err != nil {
			srv.logLost(s, err, commands)
			return
		}
		if rep.Close {
			return
		}
	}
}

// handle answers one command; a panic carrying it out is answered
// errorinternalproblem with forceabort, and the session closes.
func (srv *Server) handle(h Handler, s *Session, frame []byte) (rep Reply) {
	defer func() {
		if v := recover(); v != nil {
			srv.logAlert(s, v)
			rep = Reply{Status: srv.Proto.Status.Internal, ForceAbort: true, Close: true}
		}
	}()
	return srv.dispatch(h, s, frame)
}

func (srv *Server) dispatch(h Handler, s *Session, frame []byte) Reply {
	st := srv.Proto.Status
	pdu, err := srv.Proto.Unmarshal(frame)
	if err != nil {
		srv.logMalformed(s, err)
		return Reply{Status: st.Malformed, ForceAbort: true}
	}
	if pdu.Command == nil {
		srv.logNotCommand(s)
		return Reply{Status: st.Malformed, ForceAbort: true}
	}
	if auth := srv.Proto.Auth; auth != nil {
		isAuth := auth(pdu.Command)
		switch {
		case isAuth && s.Account != "":
			return Reply{Status: st.Unexpected, ForceAbort: true}
		case !isAuth && s.Account == "":
			return Reply{Status: st.NotAuthenticated}
		}
	}
	return h.Handle(s, pdu.Command)
}

// live are the settings Reconfigure put in force.
type live struct {
	limits    Limits
	clearAuth bool
}

// current returns the limits and cleartextauth in force for a session
// beginning now.
func (srv *Server) current() (Limits, bool) {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if srv.live != nil {
		return srv.live.limits, srv.live.clearAuth
	}
	return srv.Limits, srv.ClearAuth
}

// Reconfigure puts new limits and cleartextauth in force for the sessions
// that begin from now on (a listener's SIGHUP); sessions in progress keep
// those they began with. In memory, the count of sessions per address
// carries over to the new cap. Call it once Run has started.
func (srv *Server) Reconfigure(l Limits, clearAuth bool) {
	srv.mu.Lock()
	srv.live = &live{limits: l, clearAuth: clearAuth}
	switch m, ok := srv.slots.(*MemSlots); {
	case ok && l.PerAddr > 0 && l.Slots == nil:
		m.setN(l.PerAddr)
	default:
		srv.slots = l.SlotsFor(srv.listen)
	}
	srv.mu.Unlock()
	srv.logReconfigured(l, clearAuth)
}

func (srv *Server) track(c Conn, add bool) {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if srv.conns == nil {
		srv.conns = map[Conn]bool{}
	}
	if add {
		srv.conns[c] = true
	} else {
		delete(srv.conns, c)
	}
}

// Shutdown stops the sessions: each finishes the command it is carrying
// out, answers errorserviceshutdown, and closes.
func (srv *Server) Shutdown() {
	srv.closing.Store(true)
	srv.mu.Lock()
	for c := range srv.conns {
		c.SetReadDeadline(time.Now()) // wakes a session waiting for a command
	}
	srv.mu.Unlock()
}
