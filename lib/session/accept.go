// Where sessions come from: ServeListener accepting connections, ServeStdio
// running one on stdin/stdout (tcpserver), each first taking one of its
// address's slots (acquire).

package session

import (
	"errors"
	"net"
	"net/netip"
	"time"

	"im2000/lib/wire"
)

// ServeListener accepts sessions until l is closed. Past MaxConns
// sessions, a new connection is answered errorserviceshutdown and closed
// at once, so that a flood of idle connections cannot starve the server.
func (srv *Server) ServeListener(l net.Listener) error {
	sem := make(chan struct{}, srv.MaxConns)
	for {
		c, err := l.Accept()
		if err != nil {
			if srv.closing.Load() || errors.Is(err, net.ErrClosed) {
				srv.wg.Wait()
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			srv.logAccept(err)
			time.Sleep(100 * time.Millisecond) // EMFILE and the like: do not spin
			continue
		}
		s := &Session{Remote: addrPort(c.RemoteAddr()), Local: addrPort(c.LocalAddr())}
		select {
		case sem <- struct{}{}:
			release, ok := srv.acquire(c, s)
			if !ok {
				<-sem
				continue
			}
			srv.wg.Add(1)
			go func() {
				defer srv.wg.Done()
				defer func() { <-sem }()
				defer release()
				srv.Serve(c, s)
			}()
		default:
			srv.logRefusedBusy(s, srv.MaxConns)
			c.SetWriteDeadline(time.Now().Add(time.Second))
			wire.WriteFrame(c, wire.MarshalResponse(true, srv.Proto.Status.Shutdown, wire.Null{}))
			c.Close()
		}
	}
}

func addrPort(a net.Addr) netip.AddrPort {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.AddrPort()
	}
	return netip.AddrPort{}
}

// ServeStdio runs one session on stdin/stdout, as under tcpserver: the
// peer's address comes from TCPREMOTEIP and TCPREMOTEPORT or, without them
// (inetd, systemd's Accept=yes), from the socket stdin is. Without any,
// every such session counts under one address (AddrKey "unknown") for the
// limits per address, and says so in the log.
func (srv *Server) ServeStdio() error {
	c, err := StdioConn()
	if err != nil {
		return err
	}
	s := &Session{localUser: LocalUser(c)}
	s.Remote, s.Local = StdioPeer(c)
	if !s.Remote.Addr().IsValid() {
		srv.logNoAddress()
	}
	release, ok := srv.acquire(c, s)
	if !ok {
		return nil
	}
	defer release()
	srv.Serve(c, s)
	return nil
}

// acquire takes one of the session's address's slots (Limits.PerAddr).
// When they are all taken, the client is told errorserviceshutdown with
// forceabort (try again later), and c is closed. A failure to count (the
// state directory unusable) lets the session in: the global cap still
// holds, and refusing everybody would be worse.
func (srv *Server) acquire(c Conn, s *Session) (func(), bool) {
	srv.mu.Lock()
	slots := srv.slots
	srv.mu.Unlock()
	if slots == nil {
		return func() {}, true
	}
	release, ok, err := slots.Acquire(s.Remote.Addr())
	if err != nil {
		srv.logNotCounted(s, err)
		return func() {}, true
	}
	if !ok {
		lim, _ := srv.current()
		srv.logRefusedAddr(s, lim.PerAddr)
		c.SetWriteDeadline(time.Now().Add(time.Second))
		wire.WriteFrame(c, wire.MarshalResponse(true, srv.Proto.Status.Shutdown, wire.Null{}))
		c.Close()
	}
	return release, ok
}
