package session

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"im2000/lib/conf"
	"im2000/lib/locate"
	"im2000/lib/wire"
)

// Client is the client end of a session.
type Client struct {
	Proto   *wire.Protocol
	Timeout time.Duration // for each command's response
	MaxPDU  int
	conn    net.Conn
	r       *bufio.Reader
}

// NewClient starts a session over conn.
func NewClient(conn net.Conn, p *wire.Protocol, timeout time.Duration) *Client {
	return &Client{Proto: p, Timeout: timeout, MaxPDU: wire.DefaultMaxPDU, conn: conn, r: bufio.NewReaderSize(conn, 64<<10)}
}

// Dial connects to addr and starts a session.
func Dial(ctx context.Context, p *wire.Protocol, addr string, timeout time.Duration) (*Client, error) {
	d := net.Dialer{Timeout: timeout}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return NewClient(c, p, timeout), nil
}

// StatusError is a response whose status is not noerror.
type StatusError struct {
	Proto      *wire.Protocol
	Status     uint64
	ForceAbort bool
}

func (e *StatusError) Error() string {
	s := fmt.Sprintf("%s: %s", e.Proto.Name, e.Proto.StatusName(e.Status))
	if e.ForceAbort {
		s += " (aborted)"
	}
	return s
}

// ErrProtocol marks an answer that breaks the protocol: a PDU that does
// not decode, is longer than the limit, is a command, or is not the
// response the command calls for. Callers treat it as temporary (the peer
// may be fixed) but distinct from a peer that is down or silent, which
// shows as a network error.
var ErrProtocol = errors.New("protocol error")

func protoErr(p *wire.Protocol, format string, a ...any) error {
	return fmt.Errorf("%s: %w: %s", p.Name, ErrProtocol, fmt.Sprintf(format, a...))
}

// Call sends a command and reads its response, of whatever alternative.
// Callers use Expect, which checks the alternative; Call is for tests and
// tools that look at raw responses. A transport error is returned as such;
// an undecodable or oversized answer wraps ErrProtocol; a response with a
// status other than noerror is returned with a *StatusError.
func (c *Client) Call(cmd wire.Body) (*wire.PDU, error) {
	c.conn.SetDeadline(time.Now().Add(c.Timeout))
	if err := wire.WriteFrame(c.conn, wire.MarshalCommand(cmd)); err != nil {
		return nil, err
	}
	frame, err := wire.ReadFrame(c.r, c.MaxPDU)
	switch {
	case errors.Is(err, wire.ErrTooLong):
		return nil, protoErr(c.Proto, "%v", err)
	case errors.Is(err, os.ErrDeadlineExceeded):
		return nil, fmt.Errorf("%s: no answer within %v: %w", c.Proto.Name, c.Timeout, err)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return nil, fmt.Errorf("%s: the server closed the connection without answering: %w", c.Proto.Name, err)
	case err != nil:
		return nil, err
	}
	pdu, err := c.Proto.Unmarshal(frame)
	if err != nil {
		return nil, protoErr(c.Proto, "%v", err)
	}
	if pdu.Response == nil {
		return nil, protoErr(c.Proto, "the server sent a command")
	}
	if pdu.Status != c.Proto.Status.OK {
		return pdu, &StatusError{Proto: c.Proto, Status: pdu.Status, ForceAbort: pdu.ForceAbort}
	}
	return pdu, nil
}

// Expect sends cmd and returns its response as T, the alternative that
// answers cmd with noerror. Any other alternative wraps ErrProtocol, so a
// hostile or broken peer can make a call fail but never panic its caller.
// A status other than noerror is a *StatusError, whatever the alternative.
func Expect[T wire.Body](c *Client, cmd wire.Body) (T, error) {
	var zero T
	pdu, err := c.Call(cmd)
	if err != nil {
		return zero, err
	}
	body := pdu.Response
	r, ok := body.(T)
	if !ok {
		return zero, protoErr(c.Proto, "answered %T with %T", cmd, pdu.Response)
	}
	return r, nil
}

// ClientTimeout reads the timeout setting of the client programs
// (im2000-fetch, im2000-pop3d, im2000-listd, remote im2000-inject and
// im2000-status): seconds to wait for a connection and for each answer.
func ClientTimeout(d conf.Dir) (time.Duration, error) {
	secs, err := d.Num("timeout")
	if err != nil {
		return 0, err
	}
	return time.Duration(max(secs, 1)) * time.Second, nil
}

// Close ends the session.
func (c *Client) Close() error { return c.conn.Close() }

// RemoteAddr is the server's address, for logs.
func (c *Client) RemoteAddr() string { return c.conn.RemoteAddr().String() }

// Connect finds the server of protocol p's service for domain (routes
// file, else DNS SRV) and starts a session with the first that answers.
// Its errors wrap locate.ErrBadDomain (permanent), locate.ErrNoService,
// locate.ErrNoAnswer (DNS did not answer) or locate.ErrNoServer (temporary).
func Connect(ctx context.Context, l *locate.Locator, p *wire.Protocol, domain string, timeout time.Duration) (*Client, error) {
	conn, err := l.Dial(ctx, strings.ToLower(p.Name), domain)
	if err != nil {
		return nil, err
	}
	return NewClient(conn, p, timeout), nil
}

// DialWhere starts a session with where: a host:port, or a domain whose
// server is found as Connect finds it.
func DialWhere(ctx context.Context, l *locate.Locator, p *wire.Protocol, where string, timeout time.Duration) (*Client, error) {
	if _, _, err := net.SplitHostPort(where); err == nil {
		return Dial(ctx, p, where, timeout)
	}
	return Connect(ctx, l, p, where, timeout)
}
