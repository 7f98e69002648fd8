// Package locatetest runs a small authoritative DNS server on loopback for
// tests of service location: real UDP and TCP, answers from a fixed zone,
// NXDOMAIN for names not in it, truncation over UDP past 512 octets. It can
// lose datagrams and answer SERVFAIL, as the Internet does, and has a UDP
// relay that loses datagrams in front of any other DNS server.
package locatetest

import (
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
)

// Server is a small authoritative DNS server on loopback, over UDP and
// TCP, answering from a fixed zone: names absent from it get NXDOMAIN.
type Server struct {
	Addr string
	zone map[string][]dnsmessage.Resource // by lowercase name with the final dot

	mu       sync.Mutex
	drop     int             // UDP queries still to be lost
	servfail map[string]bool // names answered SERVFAIL
	ignore   map[ignored]bool
	udp, tcp int // queries seen, lost ones included
}

// RR makes a resource record.
func RR(name string, body dnsmessage.ResourceBody) dnsmessage.Resource {
	return dnsmessage.Resource{Header: dnsmessage.ResourceHeader{Name: dnsmessage.MustNewName(name), Class: dnsmessage.ClassINET, TTL: 60}, Body: body}
}

// SRV makes an SRV record.
func SRV(name string, prio, weight, port uint16, target string) dnsmessage.Resource {
	return RR(name, &dnsmessage.SRVResource{Priority: prio, Weight: weight, Port: port, Target: dnsmessage.MustNewName(target)})
}

// A makes an A record for 127.0.0.1.
func A(name string) dnsmessage.Resource {
	return RR(name, &dnsmessage.AResource{A: [4]byte{127, 0, 0, 1}})
}

// DropUDP makes the server lose the next n queries that come over UDP,
// as a lossy network would: they are read and not answered.
func (d *Server) DropUDP(n int) {
	d.mu.Lock()
	d.drop = n
	d.mu.Unlock()
}

// ServFail makes the server answer SERVFAIL for name (lowercase, with the
// final dot), whatever the question's type.
func (d *Server) ServFail(name string) {
	d.mu.Lock()
	if d.servfail == nil {
		d.servfail = map[string]bool{}
	}
	d.servfail[name] = true
	d.mu.Unlock()
}

// ignored is a name (lowercase, with the final dot) and a type.
type ignored struct {
	name string
	t    dnsmessage.Type
}

// Ignore makes the server leave every question of type t for name
// (lowercase, with the final dot) unanswered, over UDP and TCP, as a
// resolver that times out or a path that drops them does.
func (d *Server) Ignore(name string, t dnsmessage.Type) {
	d.mu.Lock()
	if d.ignore == nil {
		d.ignore = map[ignored]bool{}
	}
	d.ignore[ignored{name, t}] = true
	d.mu.Unlock()
}

// Queries tells how many queries came over UDP (lost ones included) and
// over TCP.
func (d *Server) Queries() (udp, tcp int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.udp, d.tcp
}

func (d *Server) answer(q []byte, udp bool) []byte {
	d.mu.Lock()
	if udp {
		d.udp++
		if d.drop > 0 {
			d.drop--
			d.mu.Unlock()
			return nil
		}
	} else {
		d.tcp++
	}
	d.mu.Unlock()
	var m dnsmessage.Message
	if err := m.Unpack(q); err != nil || len(m.Questions) != 1 {
		return nil
	}
	question := m.Questions[0]
	name := strings.ToLower(question.Name.String())
	resp := dnsmessage.Message{Header: dnsmessage.Header{ID: m.ID, Response: true, Authoritative: true}, Questions: m.Questions}
	d.mu.Lock()
	fail, ignore := d.servfail[name], d.ignore[ignored{name, question.Type}]
	d.mu.Unlock()
	if ignore {
		return nil
	}
	if fail {
		resp.RCode, resp.Authoritative = dnsmessage.RCodeServerFailure, false
		b, _ := resp.Pack()
		return b
	}
	rrs, ok := d.zone[name]
	if !ok {
		resp.RCode = dnsmessage.RCodeNameError
	}
	for _, r := range rrs {
		if bodyType(r.Body) == question.Type {
			resp.Answers = append(resp.Answers, r)
		}
	}
	b, _ := resp.Pack()
	if udp && len(b) > 512 {
		resp.Answers, resp.Truncated = nil, true
		b, _ = resp.Pack()
	}
	return b
}

func bodyType(b dnsmessage.ResourceBody) dnsmessage.Type {
	switch b.(type) {
	case *dnsmessage.SRVResource:
		return dnsmessage.TypeSRV
	case *dnsmessage.AResource:
		return dnsmessage.TypeA
	case *dnsmessage.AAAAResource:
		return dnsmessage.TypeAAAA
	case *dnsmessage.TXTResource:
		return dnsmessage.TypeTXT
	case *dnsmessage.SOAResource:
		return dnsmessage.TypeSOA
	case *dnsmessage.MXResource:
		return dnsmessage.TypeMX
	case *dnsmessage.NSResource:
		return dnsmessage.TypeNS
	case *dnsmessage.CNAMEResource:
		return dnsmessage.TypeCNAME
	}
	return 0
}

// StartDNS serves zone (names in lowercase with the final dot) until the
// test ends. A name in the zone without records of the type asked is
// answered NOERROR with no records, as it exists.
func StartDNS(t testing.TB, zone map[string][]dnsmessage.Resource) *Server {
	pc, l := listenBoth(t)
	t.Cleanup(func() { pc.Close(); l.Close() })
	d := &Server{Addr: pc.LocalAddr().String(), zone: zone}
	go func() {
		buf := make([]byte, 65536)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if out := d.answer(buf[:n], true); out != nil {
				pc.WriteTo(out, from)
			}
		}
	}()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				var hdr [2]byte
				if _, err := io.ReadFull(c, hdr[:]); err != nil {
					return
				}
				q := make([]byte, int(hdr[0])<<8|int(hdr[1]))
				if _, err := io.ReadFull(c, q); err != nil {
					return
				}
				if out := d.answer(q, false); out != nil {
					c.Write(append([]byte{byte(len(out) >> 8), byte(len(out))}, out...))
				}
			}()
		}
	}()
	return d
}

// listenBoth listens on one loopback port for UDP and TCP, as a DNS server
// does; the port UDP gets may be taken for TCP, so it tries a few.
func listenBoth(t testing.TB) (net.PacketConn, net.Listener) {
	var err error
	for range 20 {
		var pc net.PacketConn
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			break
		}
		l, lerr := net.Listen("tcp", pc.LocalAddr().String())
		if lerr == nil {
			return pc, l
		}
		pc.Close()
		err = lerr
	}
	t.Fatal(err)
	return nil, nil
}

// Relay stands between DNS clients and a DNS server (any, such as a real
// nsd) on loopback: it passes UDP datagrams both ways, losing the first
// ones the clients send, and passes TCP connections through unchanged.
type Relay struct {
	Addr string

	mu               sync.Mutex
	drop             int
	lose             func(dnsmessage.Question) bool
	dropped, relayed int
}

// Lose makes the relay lose, from now on, every client datagram whose
// question matches (nil: none), as an on-path attacker who drops one kind
// of question does; TCP still passes.
func (r *Relay) Lose(match func(dnsmessage.Question) bool) {
	r.mu.Lock()
	r.lose = match
	r.mu.Unlock()
}

// matches tells whether a client datagram holds a question that match
// picks out.
func matches(b []byte, match func(dnsmessage.Question) bool) bool {
	if match == nil {
		return false
	}
	var p dnsmessage.Parser
	if _, err := p.Start(b); err != nil {
		return false
	}
	q, err := p.Question()
	return err == nil && match(q)
}

// StartRelay relays to upstream (ip:port), losing the first drop datagrams
// that clients send, until the test ends.
func StartRelay(t testing.TB, upstream string, drop int) *Relay {
	pc, l := listenBoth(t)
	r := &Relay{Addr: pc.LocalAddr().String(), drop: drop}
	var mu sync.Mutex
	ups := map[string]net.Conn{} // one upstream socket per client address
	var wg sync.WaitGroup
	t.Cleanup(func() {
		pc.Close()
		l.Close()
		mu.Lock()
		for _, c := range ups {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(2)
	go func() {
		defer wg.Done()
		buf := make([]byte, 65536)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			r.mu.Lock()
			lose := r.drop > 0 || matches(buf[:n], r.lose)
			if lose {
				r.drop = max(r.drop-1, 0)
				r.dropped++
			} else {
				r.relayed++
			}
			r.mu.Unlock()
			if lose {
				continue
			}
			mu.Lock()
			up, ok := ups[from.String()]
			if !ok {
				if up, err = net.Dial("udp", upstream); err != nil {
					mu.Unlock()
					continue
				}
				ups[from.String()] = up
				wg.Add(1)
				go func() { // answers back to this client
					defer wg.Done()
					b := make([]byte, 65536)
					for {
						n, err := up.Read(b)
						if err != nil {
							var errno syscall.Errno
							if errors.As(err, &errno) && !errors.Is(err, net.ErrClosed) {
								continue // ICMP from a server not (yet) listening
							}
							return
						}
						pc.WriteTo(b[:n], from)
					}
				}()
			}
			mu.Unlock()
			up.Write(buf[:n])
		}
	}()
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", upstream)
			if err != nil {
				c.Close()
				continue
			}
			go func() { io.Copy(up, c); up.(*net.TCPConn).CloseWrite() }()
			go func() { io.Copy(c, up); c.Close(); up.Close() }()
		}
	}()
	return r
}

// Counts tells how many client datagrams the relay lost and passed on.
func (r *Relay) Counts() (dropped, relayed int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.dropped, r.relayed
}
