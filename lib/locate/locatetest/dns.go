// Package locatetest runs a small authoritative DNS server on loopback for
// tests of service location: real UDP and TCP, answers from a fixed zone,
// NXDOMAIN for names not in it, truncation over UDP past 512 octets.
package locatetest

import (
	"net"
	"strings"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
)

// Server is a small authoritative DNS server on loopback, over UDP and
// TCP, answering from a fixed zone: names absent from it get NXDOMAIN.
type Server struct {
	Addr string
	zone map[string][]dnsmessage.Resource // by lowercase name with the final dot
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

func (d *Server) answer(q []byte, udp bool) []byte {
	var m dnsmessage.Message
	if err := m.Unpack(q); err != nil || len(m.Questions) != 1 {
		return nil
	}
	question := m.Questions[0]
	resp := dnsmessage.Message{Header: dnsmessage.Header{ID: m.ID, Response: true, Authoritative: true}, Questions: m.Questions}
	rrs, ok := d.zone[strings.ToLower(question.Name.String())]
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
	case *dnsmessage.TXTResource:
		return dnsmessage.TypeTXT
	}
	return 0
}

// StartDNS serves zone (names in lowercase with the final dot) until the
// test ends.
func StartDNS(t testing.TB, zone map[string][]dnsmessage.Resource) *Server {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
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
				if _, err := c.Read(hdr[:]); err != nil {
					return
				}
				q := make([]byte, int(hdr[0])<<8|int(hdr[1]))
				if _, err := c.Read(q); err != nil {
					return
				}
				out := d.answer(q, false)
				c.Write(append([]byte{byte(len(out) >> 8), byte(len(out))}, out...))
			}()
		}
	}()
	return d
}
