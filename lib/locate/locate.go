// Package locate finds the server of an IM2000 service for a domain
// (DESIGN.md section 3): a static routes file first, like qmail's
// smtproutes, else DNS SRV records (_msoap._tcp, _msrap._tcp, _rnasp._tcp,
// _rnaqp._tcp) in RFC 2782 order. It tells permanent failures (the domain
// does not exist) from temporary ones (no records, no answer, no server
// reachable), as the IM2000 algorithm needs for baddomain, noservice and
// noserver.
//
// It speaks DNS itself, with golang.org/x/net/dns/dnsmessage, because Go's
// resolver reports a name that does not exist and a name without SRV
// records the same way.
package locate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"im2000/lib/conf"
)

var (
	// ErrBadDomain: the domain does not exist (NXDOMAIN). Permanent.
	ErrBadDomain = errors.New("domain does not exist")
	// ErrNoService: no route and no SRV records, or no DNS answer. Temporary.
	ErrNoService = errors.New("no service record")
	// ErrNoServer: no server of the service could be reached. Temporary.
	ErrNoServer = errors.New("no server reachable")
)

// Locator finds servers.
type Locator struct {
	// Routes maps an SRV name ("_rnasp._tcp.example.org") to host:port
	// addresses tried in order; a route overrides DNS.
	Routes map[string][]string
	// Resolvers are DNS servers (ip:port) asked in turn.
	Resolvers []string
	Timeout   time.Duration // per DNS query and per connection attempt
}

// FromConf reads the routes file and the resolvers file of a config
// directory; without a resolvers file, the nameservers of /etc/resolv.conf.
func FromConf(d conf.Dir) (*Locator, error) {
	l := &Locator{Routes: map[string][]string{}, Timeout: 5 * time.Second}
	lines, err := d.Lines("routes")
	if err != nil {
		return nil, err
	}
	for _, line := range lines {
		f := strings.Fields(line)
		if len(f) < 2 || !strings.HasPrefix(f[0], "_") {
			return nil, fmt.Errorf("%s: %q: want \"_service._tcp.domain host:port...\"", d.Path("routes"), line)
		}
		for _, a := range f[1:] {
			if _, _, err := net.SplitHostPort(a); err != nil {
				return nil, fmt.Errorf("%s: %q: %v", d.Path("routes"), line, err)
			}
		}
		l.Routes[strings.ToLower(strings.TrimSuffix(f[0], "."))] = f[1:]
	}
	if l.Resolvers, err = d.Lines("resolvers"); err != nil {
		return nil, err
	}
	if l.Resolvers == nil {
		l.Resolvers = resolvConf("/etc/resolv.conf")
	}
	return l, nil
}

func resolvConf(path string) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "nameserver" {
			out = append(out, net.JoinHostPort(f[1], "53"))
		}
	}
	return out
}

// SRVName is the name looked up for service ("rnasp") at domain.
func SRVName(service, domain string) string {
	return "_" + service + "._tcp." + strings.ToLower(strings.TrimSuffix(domain, "."))
}

// Targets returns the addresses to try for service at domain, in order.
func (l *Locator) Targets(ctx context.Context, service, domain string) ([]string, error) {
	name := SRVName(service, domain)
	if r, ok := l.Routes[name]; ok {
		return r, nil
	}
	rcode, answers, err := l.query(ctx, name, dnsmessage.TypeSRV)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrNoService, name, err)
	}
	if rcode == dnsmessage.RCodeNameError {
		return nil, fmt.Errorf("%w: %s", ErrBadDomain, name)
	}
	srvs := srvRecords(answers)
	if len(srvs) == 0 {
		return nil, fmt.Errorf("%w: %s has no SRV records", ErrNoService, name)
	}
	var out []string
	for _, s := range Order(srvs) {
		addrs, err := l.hostAddrs(ctx, s.Target.String())
		if err != nil {
			continue // a target that does not resolve is one server less
		}
		for _, a := range addrs {
			out = append(out, net.JoinHostPort(a.String(), strconv.Itoa(int(s.Port))))
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no target of %s has an address", ErrNoServer, name)
	}
	return out, nil
}

// srvRecords picks the SRV records of an answer, leaving out the "."
// target that says the service is not offered (RFC 2782).
func srvRecords(answers []dnsmessage.Resource) []*dnsmessage.SRVResource {
	var srvs []*dnsmessage.SRVResource
	for _, a := range answers {
		if s, ok := a.Body.(*dnsmessage.SRVResource); ok && s.Target.String() != "." {
			srvs = append(srvs, s)
		}
	}
	return srvs
}

// Order sorts SRV records as RFC 2782 says: by priority, and within a
// priority by weighted random choice.
func Order(srvs []*dnsmessage.SRVResource) []*dnsmessage.SRVResource {
	s := append([]*dnsmessage.SRVResource(nil), srvs...)
	sort.SliceStable(s, func(i, j int) bool { return s[i].Priority < s[j].Priority })
	var out []*dnsmessage.SRVResource
	for len(s) > 0 {
		n := 1
		for n < len(s) && s[n].Priority == s[0].Priority {
			n++
		}
		group := s[:n]
		// Zero weights first, so that they have a small chance when
		// others are present.
		sort.SliceStable(group, func(i, j int) bool { return group[i].Weight == 0 && group[j].Weight != 0 })
		for len(group) > 0 {
			total := 0
			for _, g := range group {
				total += int(g.Weight)
			}
			pick, r, sum := 0, rand.IntN(total+1), 0
			for i, g := range group {
				sum += int(g.Weight)
				if sum >= r {
					pick = i
					break
				}
			}
			out = append(out, group[pick])
			group = append(group[:pick:pick], group[pick+1:]...)
		}
		s = s[n:]
	}
	return out
}

func (l *Locator) hostAddrs(ctx context.Context, host string) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(strings.TrimSuffix(host, ".")); err == nil {
		return []netip.Addr{a}, nil
	}
	var out []netip.Addr
	for _, t := range []dnsmessage.Type{dnsmessage.TypeAAAA, dnsmessage.TypeA} {
		_, answers, err := l.query(ctx, host, t)
		if err != nil {
			continue
		}
		for _, a := range answers {
			switch b := a.Body.(type) {
			case *dnsmessage.AResource:
				out = append(out, netip.AddrFrom4(b.A))
			case *dnsmessage.AAAAResource:
				out = append(out, netip.AddrFrom16(b.AAAA))
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s has no address", host)
	}
	return out, nil
}

// query asks the resolvers in turn until one gives an answer that means
// something: success or "no such name".
func (l *Locator) query(ctx context.Context, name string, t dnsmessage.Type) (dnsmessage.RCode, []dnsmessage.Resource, error) {
	if len(l.Resolvers) == 0 {
		return 0, nil, errors.New("no DNS resolvers configured")
	}
	qname, err := dnsmessage.NewName(strings.TrimSuffix(name, ".") + ".")
	if err != nil {
		return 0, nil, err
	}
	lastErr := errors.New("no answer")
	for _, server := range l.Resolvers {
		msg, err := l.exchange(ctx, server, qname, t)
		if err != nil {
			lastErr = err
			continue
		}
		switch msg.RCode {
		case dnsmessage.RCodeSuccess, dnsmessage.RCodeNameError:
			return msg.RCode, msg.Answers, nil
		}
		lastErr = fmt.Errorf("%s answered %v", server, msg.RCode)
	}
	return 0, nil, lastErr
}

func (l *Locator) exchange(ctx context.Context, server string, qname dnsmessage.Name, t dnsmessage.Type) (*dnsmessage.Message, error) {
	id := uint16(rand.Uint32())
	q := dnsmessage.Message{
		Header:    dnsmessage.Header{ID: id, RecursionDesired: true},
		Questions: []dnsmessage.Question{{Name: qname, Type: t, Class: dnsmessage.ClassINET}},
	}
	packed, err := q.Pack()
	if err != nil {
		return nil, err
	}
	timeout := l.Timeout
	if timeout == 0 {
		timeout = 5 * time.Second
	}
	for _, network := range []string{"udp", "tcp"} {
		d := net.Dialer{Timeout: timeout}
		c, err := d.DialContext(ctx, network, server)
		if err != nil {
			return nil, err
		}
		c.SetDeadline(time.Now().Add(timeout))
		buf := make([]byte, 65536)
		var n int
		if network == "udp" {
			if _, err = c.Write(packed); err == nil {
				n, err = c.Read(buf)
			}
		} else {
			framed := append([]byte{byte(len(packed) >> 8), byte(len(packed))}, packed...)
			if _, err = c.Write(framed); err == nil {
				var hdr [2]byte
				if _, err = io.ReadFull(c, hdr[:]); err == nil {
					n = int(hdr[0])<<8 | int(hdr[1])
					_, err = io.ReadFull(c, buf[:n])
				}
			}
		}
		c.Close()
		if err != nil {
			return nil, err
		}
		m, err := reply(buf[:n], id, qname)
		if err != nil {
			return nil, err
		}
		if m.Truncated && network == "udp" {
			continue // ask again over TCP
		}
		return m, nil
	}
	return nil, errors.New("truncated answer")
}

// reply decodes a DNS answer and checks that it answers the question asked.
func reply(b []byte, id uint16, qname dnsmessage.Name) (*dnsmessage.Message, error) {
	var m dnsmessage.Message
	if err := m.Unpack(b); err != nil {
		return nil, err
	}
	if m.ID != id || !m.Response || len(m.Questions) != 1 || m.Questions[0].Name != qname {
		return nil, errors.New("answer does not match the question")
	}
	return &m, nil
}

// Dial connects to the first reachable server of service at domain.
func (l *Locator) Dial(ctx context.Context, service, domain string) (net.Conn, error) {
	targets, err := l.Targets(ctx, service, domain)
	if err != nil {
		return nil, err
	}
	var errs []string
	for _, t := range targets {
		d := net.Dialer{Timeout: l.Timeout}
		c, err := d.DialContext(ctx, "tcp", t)
		if err == nil {
			return c, nil
		}
		errs = append(errs, err.Error())
	}
	return nil, fmt.Errorf("%w for %s: %s", ErrNoServer, SRVName(service, domain), strings.Join(errs, "; "))
}
