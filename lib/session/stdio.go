// Stdin/stdout as a connection: the peer's address from tcpserver's
// environment, and StdioConn, the socket itself or the two pipe ends.

package session

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

func envAddrPort(ip, port string) netip.AddrPort {
	ap, _ := netip.ParseAddrPort(net.JoinHostPort(os.Getenv(ip), os.Getenv(port)))
	return ap
}

// StdioConn makes stdin/stdout a Conn with deadlines: the socket itself
// under tcpserver, or the two pipe ends in non-blocking mode otherwise.
func StdioConn() (net.Conn, error) {
	if c, err := net.FileConn(os.Stdin); err == nil {
		return c, nil
	}
	// On pipes, a write to a reader that has gone is EPIPE on fd 1, which
	// Go answers by killing the process with SIGPIPE: the session's own
	// end (a TLS close_notify, retrieved's last read-status retry) would
	// be cut short. Ignored, the write just fails and the session ends.
	signal.Ignore(syscall.SIGPIPE)
	for _, fd := range []int{0, 1} {
		if err := unix.SetNonblock(fd, true); err != nil {
			return nil, fmt.Errorf("stdin/stdout: %v", err)
		}
	}
	return &pipeConn{in: os.NewFile(0, "stdin"), out: os.NewFile(1, "stdout")}, nil
}

type pipeConn struct{ in, out *os.File }

func (p *pipeConn) Read(b []byte) (int, error)         { return p.in.Read(b) }
func (p *pipeConn) Write(b []byte) (int, error)        { return p.out.Write(b) }
func (p *pipeConn) SetReadDeadline(t time.Time) error  { return p.in.SetReadDeadline(t) }
func (p *pipeConn) SetWriteDeadline(t time.Time) error { return p.out.SetWriteDeadline(t) }
func (p *pipeConn) LocalAddr() net.Addr                { return pipeAddr{} }
func (p *pipeConn) RemoteAddr() net.Addr               { return pipeAddr{} }

// SetDeadline makes pipeConn a net.Conn, which crypto/tls wants.
func (p *pipeConn) SetDeadline(t time.Time) error {
	return errors.Join(p.in.SetReadDeadline(t), p.out.SetWriteDeadline(t))
}

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "stdin/stdout" }

func (p *pipeConn) Close() error {
	p.in.Close()
	return p.out.Close()
}
