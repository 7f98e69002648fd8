// Package hostile is a fake IM2000 server for tests: it takes the
// sessions of any of the four protocols and answers each command as the
// test says, rightly or in every wrong way a peer on the Internet may
// choose: another response alternative, the wrong count of results,
// garbage, an oversize length prefix, a command, a close, or nothing at
// all (DESIGN.md section 5: every peer is untrusted).
package hostile

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"

	"im2000/lib/wire"
)

// Answer is what the server does about one command.
type Answer struct {
	Frame  []byte // a PDU, sent with its length prefix
	Raw    []byte // bytes sent as they are, after Frame
	Silent bool   // nothing more: the connection stays open, unanswered
	Close  bool   // the connection is closed
}

// Respond answers with body, status noerror.
func Respond(body wire.Body) Answer {
	return Answer{Frame: wire.MarshalResponse(false, 0, body)}
}

// Handler answers the commands of one session, in order.
type Handler func(cmd wire.Body) Answer

// Server is a fake server of one protocol on a loopback port.
type Server struct {
	Addr     string
	Proto    *wire.Protocol
	sessions atomic.Int64
	commands atomic.Int64
	mu       sync.Mutex
	handler  func() Handler
	l        net.Listener
	conns    map[net.Conn]bool
	done     chan struct{}
}

// Start serves p on a loopback port until the test ends; each session
// gets a handler from newHandler.
func Start(t testing.TB, p *wire.Protocol, newHandler func() Handler) *Server {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Addr: l.Addr().String(), Proto: p, handler: newHandler, l: l, conns: map[net.Conn]bool{}, done: make(chan struct{})}
	go s.accept()
	t.Cleanup(s.stop)
	return s
}

// Set replaces the handler for the sessions that start from now on.
func (s *Server) Set(newHandler func() Handler) {
	s.mu.Lock()
	s.handler = newHandler
	s.mu.Unlock()
}

// Sessions counts the sessions so far; Commands the commands.
func (s *Server) Sessions() int64 { return s.sessions.Load() }
func (s *Server) Commands() int64 { return s.commands.Load() }

func (s *Server) stop() {
	close(s.done)
	s.l.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
}

func (s *Server) accept() {
	for {
		c, err := s.l.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns[c] = true
		h := s.handler()
		s.mu.Unlock()
		s.sessions.Add(1)
		go s.serve(c, h)
	}
}

func (s *Server) serve(c net.Conn, h Handler) {
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		c.Close()
	}()
	r := bufio.NewReader(c)
	for {
		frame, err := wire.ReadFrame(r, wire.DefaultMaxPDU)
		if err != nil {
			return
		}
		s.commands.Add(1)
		var cmd wire.Body
		if pdu, err := s.Proto.Unmarshal(frame); err == nil {
			cmd = pdu.Command
		}
		a := h(cmd)
		if a.Frame != nil {
			if err := wire.WriteFrame(c, a.Frame); err != nil {
				return
			}
		}
		if a.Raw != nil {
			if _, err := c.Write(a.Raw); err != nil {
				return
			}
		}
		switch {
		case a.Close:
			return
		case a.Silent:
			<-s.done
			return
		}
	}
}

// Case is one way of answering a command.
type Case struct {
	Name   string
	Answer Answer
}

// Wrong returns every protocol-agnostic wrong answer to a command whose
// right answer is alternative right of p: each other alternative with
// status noerror (their empty forms), garbage inside a correct frame,
// garbage without one (an HTTP error page: its first four octets read as
// a length of about 1.2 GB), an oversize length prefix, a frame cut short,
// a command, a close, and silence.
func Wrong(p *wire.Protocol, right int) []Case {
	var out []Case
	for alt := 0; alt < len(p.Responses); alt++ {
		mk, ok := p.Responses[alt]
		if !ok || alt == right {
			continue
		}
		body := mk()
		out = append(out, Case{fmt.Sprintf("alt%d-%T", alt, body), Respond(body)})
	}
	var anyCommand wire.Body
	for alt := 0; anyCommand == nil; alt++ {
		if mk, ok := p.Commands[alt]; ok {
			anyCommand = mk()
		}
	}
	var cut [4]byte
	binary.BigEndian.PutUint32(cut[:], 100)
	return append(out,
		Case{"garbage-pdu", Answer{Frame: []byte("\x30\x05\x02\x01\x00\x04\x00trailing")}},
		Case{"garbage-raw", Answer{Raw: []byte("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")}},
		Case{"oversize", Answer{Raw: []byte{0xff, 0xff, 0xff, 0xff, 0x30, 0x00}}},
		Case{"cut-short", Answer{Raw: append(cut[:], 0xa2, 0x03), Silent: true}},
		Case{"command", Answer{Frame: wire.MarshalCommand(anyCommand)}},
		Case{"close", Answer{Close: true}},
		Case{"never", Answer{Silent: true}},
	)
}

// Target answers the commands of type T with bad and every other with
// good, so that a client gets as far as T before it meets trouble.
func Target[T wire.Body](good Handler, bad Answer) Handler {
	return TargetFunc(good, func(T) Answer { return bad })
}

// TargetFunc is Target with the bad answer made from the command.
func TargetFunc[T wire.Body](good Handler, bad func(T) Answer) Handler {
	return func(cmd wire.Body) Answer {
		if c, ok := cmd.(T); ok {
			return bad(c)
		}
		return good(cmd)
	}
}
