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
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"im2000/lib/conf"
	"im2000/lib/fail"
	"im2000/lib/tlsconf"
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
	// Resolvers are DNS servers (ip:port) asked in turn, the first first:
	// a question goes to the next one when a try goes unanswered.
	Resolvers []string
	// Timeout bounds each DNS question (all its tries) and each
	// connection attempt; 0 means 5 s.
	Timeout time.Duration
	// TLS is whom the TLS forms must prove themselves to, and which
	// domains must use them; nil: the system roots, no domain required.
	TLS *tlsconf.Client
	// Log, when set, reports what a dial could not do but did not need
	// (a domain reached over TLS that could not be remembered).
	Log func(format string, a ...any)
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
	if l.TLS, err = tlsconf.LoadClient(d); err != nil {
		return nil, err
	}
	l.Log = fail.Warning // a domain reached over TLS that cannot be remembered
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
	return l.targets(ctx, service, domain, true)
}

// targets is Targets; without exists, NXDOMAIN for the SRV name is
// ErrNoService at once (a TLS form's absence needs no further question).
func (l *Locator) targets(ctx context.Context, service, domain string, exists bool) ([]string, error) {
	name := SRVName(service, domain)
	if r, ok := l.Routes[name]; ok {
		return r, nil
	}
	if err := notAddress(domain); err != nil { // where.go
		return nil, err
	}
	rcode, answers, err := l.query(ctx, name, dnsmessage.TypeSRV)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrNoService, name, err)
	}
	if rcode == dnsmessage.RCodeNameError && !exists {
		return nil, fmt.Errorf("%w: %s does not exist", ErrNoService, name)
	}
	if rcode == dnsmessage.RCodeNameError {
		// Authoritative servers say NXDOMAIN for any owner name they do
		// not have, so this only says there is no such service; whether
		// the domain itself exists is another question.
		dom := strings.ToLower(strings.TrimSuffix(domain, "."))
		exists, err := l.exists(ctx, dom)
		switch {
		case err != nil:
			return nil, fmt.Errorf("%w: %s does not exist, and whether %s does is unknown: %v", ErrNoService, name, dom, err)
		case !exists:
			return nil, fmt.Errorf("%w: %s", ErrBadDomain, dom)
		}
		return nil, fmt.Errorf("%w: %s exists but has no %s", ErrNoService, dom, name)
	}
	srvs := srvRecords(answers)
	if len(srvs) == 0 {
		return nil, fmt.Errorf("%w: %s has no SRV records", ErrNoService, name)
	}
	var out, why []string
	for _, s := range Order(srvs) {
		addrs, err := l.hostAddrs(ctx, s.Target.String())
		if err != nil {
			why = append(why, err.Error())
			continue // a target that does not resolve is one server less
		}
		for _, a := range addrs {
			out = append(out, net.JoinHostPort(a.String(), strconv.Itoa(int(s.Port))))
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no target of %s has an address (%s)", ErrNoServer, name, strings.Join(why, "; "))
	}
	return out, nil
}

// exists tells whether a domain name exists, asking for its SOA, then its
// A, AAAA and MX records: an answer of NOERROR, with records or without, to
// any of them says it does. It does not exist only when every question is
// answered NXDOMAIN (one NOERROR is enough against a server that wrongly
// answers NXDOMAIN for some types); when some are not answered at all and
// none says NOERROR, it cannot tell, and says why.
func (l *Locator) exists(ctx context.Context, domain string) (bool, error) {
	var lastErr error
	for _, t := range []dnsmessage.Type{dnsmessage.TypeSOA, dnsmessage.TypeA, dnsmessage.TypeAAAA, dnsmessage.TypeMX} {
		rcode, _, err := l.query(ctx, domain, t)
		switch {
		case err != nil:
			lastErr = fmt.Errorf("%v: %v", t, err)
			if ctx.Err() != nil {
				return false, lastErr
			}
		case rcode == dnsmessage.RCodeSuccess:
			return true, nil
		}
	}
	return false, lastErr
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

// query asks one DNS question, retransmitting as a lossy network needs:
// at least 3 tries, one resolver after another, each try waiting twice as
// long as the one before, all within the Locator's Timeout (and the
// caller's ctx). An answer to an earlier try still counts while a later one
// is out, and a truncated answer is asked again over TCP. Only success and
// "no such name" are answers; SERVFAIL, REFUSED and the like send the next
// try at once, and when every try has failed the error says why.
func (l *Locator) query(ctx context.Context, name string, t dnsmessage.Type) (dnsmessage.RCode, []dnsmessage.Resource, error) {
	if len(l.Resolvers) == 0 {
		return 0, nil, errors.New("no DNS resolvers configured")
	}
	qname, err := dnsmessage.NewName(strings.TrimSuffix(name, ".") + ".")
	if err != nil {
		return 0, nil, err
	}
	id := uint16(rand.Uint32())
	q := dnsmessage.Message{
		Header:    dnsmessage.Header{ID: id, RecursionDesired: true},
		Questions: []dnsmessage.Question{{Name: qname, Type: t, Class: dnsmessage.ClassINET}},
	}
	packed, err := q.Pack()
	if err != nil {
		return 0, nil, err
	}
	if err := ctx.Err(); err != nil {
		return 0, nil, err
	}
	budget := l.Timeout
	if budget <= 0 {
		budget = 5 * time.Second
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < budget {
		budget = max(time.Until(dl), 0) // the tries fit the time the caller has
	}
	ctx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()
	x := newExchange()
	defer x.close()

	lastErr := errors.New("no answer")
	failed := map[string]bool{} // resolvers whose latest try failed outright
	// take reads what came from a resolver: an answer to return, a failure
	// (noted), or nothing to do with this question.
	take := func(ev event) (m *dnsmessage.Message, failure bool) {
		err := ev.err
		if err == nil {
			if m, err = reply(ev.b, id, qname, t); err != nil {
				return nil, false
			}
			if m.Truncated {
				m, err = exchangeTCP(ctx, ev.server, packed, id, qname, t)
			}
		}
		if err == nil {
			switch m.RCode {
			case dnsmessage.RCodeSuccess, dnsmessage.RCodeNameError:
				return m, false
			}
			err = fmt.Errorf("%s answered %v", ev.server, m.RCode)
		}
		lastErr = err
		failed[ev.server] = true
		return nil, true
	}
	waits := backoff(budget, max(minTries, len(l.Resolvers)))
	for try, wait := range waits {
		server := l.Resolvers[try%len(l.Resolvers)]
		delete(failed, server)
		if err := x.send(server, packed); err != nil {
			lastErr, failed[server] = err, true
			continue
		}
		timer := time.NewTimer(wait)
	waiting:
		for {
			select {
			case <-ctx.Done():
				timer.Stop()
				return 0, nil, fmt.Errorf("%v after %d tries (%w)", lastErr, try+1, ctx.Err())
			case <-timer.C:
				lastErr = fmt.Errorf("no answer from %s", server)
				break waiting
			case ev := <-x.events:
				m, failure := take(ev)
				if m != nil {
					timer.Stop()
					return m.RCode, m.Answers, nil
				}
				if failure && ev.server == server {
					timer.Stop()
					break waiting // this try failed: the next one now
				}
			}
		}
	}
	// The last try failed early: an earlier one may still be answered.
	pending := func() bool {
		for server := range x.conns {
			if !failed[server] {
				return true
			}
		}
		return false
	}
	for pending() {
		select {
		case <-ctx.Done():
			return 0, nil, fmt.Errorf("%v after %d tries (%w)", lastErr, len(waits), ctx.Err())
		case ev := <-x.events:
			if m, _ := take(ev); m != nil {
				return m.RCode, m.Answers, nil
			}
		}
	}
	return 0, nil, fmt.Errorf("%v after %d tries", lastErr, len(waits))
}

// minTries is how many times a DNS question is sent, at the least, before
// the lookup gives up; with more resolvers than that, each is asked once.
const minTries = 3

// backoff divides a query's time among n tries so that each try waits
// twice as long as the one before (up to 8 times the first) and the waits
// add up to budget: 3 tries in 5 s wait about 0.7, 1.4 and 2.9 s.
func backoff(budget time.Duration, n int) []time.Duration {
	weight := func(i int) int64 { return 1 << min(i, 3) }
	var total int64
	for i := range n {
		total += weight(i)
	}
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = time.Duration(int64(budget) / total * weight(i))
	}
	return out
}

// exchange is the UDP side of one query: a connected socket per resolver
// asked, kept open for the whole query so that a late answer to an early
// try is not lost, each read by a goroutine that hands what comes to events.
type exchange struct {
	conns  map[string]net.Conn
	events chan event
	done   chan struct{}
	wg     sync.WaitGroup
}

// event is a datagram from a resolver, or the error its socket reported
// (such as "connection refused" from an ICMP port unreachable).
type event struct {
	server string
	b      []byte
	err    error
}

func newExchange() *exchange {
	return &exchange{conns: map[string]net.Conn{}, events: make(chan event), done: make(chan struct{})}
}

func (x *exchange) send(server string, packed []byte) error {
	c, ok := x.conns[server]
	if !ok {
		var err error
		if c, err = net.Dial("udp", server); err != nil {
			return err
		}
		x.conns[server] = c
		x.wg.Add(1)
		go x.read(server, c)
	}
	_, err := c.Write(packed)
	return err
}

func (x *exchange) read(server string, c net.Conn) {
	defer x.wg.Done()
	bp := bufs.Get().(*[]byte)
	defer bufs.Put(bp)
	buf := *bp
	for {
		n, err := c.Read(buf)
		ev := event{server: server, err: err}
		if err == nil {
			ev.b = append([]byte(nil), buf[:n]...)
		} else if errors.Is(err, net.ErrClosed) {
			return
		}
		select {
		case x.events <- ev:
		case <-x.done:
			return
		}
		var errno syscall.Errno
		if err != nil && !errors.As(err, &errno) {
			return // not an ICMP report: the socket is of no more use
		}
	}
}

// bufs holds read buffers big enough for any datagram.
var bufs = sync.Pool{New: func() any { b := make([]byte, 65536); return &b }}

func (x *exchange) close() {
	close(x.done)
	for _, c := range x.conns {
		c.Close()
	}
	x.wg.Wait()
}

// exchangeTCP asks the question again over TCP, after a truncated answer.
func exchangeTCP(ctx context.Context, server string, packed []byte, id uint16, qname dnsmessage.Name, t dnsmessage.Type) (*dnsmessage.Message, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", server)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()
	framed := append([]byte{byte(len(packed) >> 8), byte(len(packed))}, packed...)
	if _, err := c.Write(framed); err != nil {
		return nil, err
	}
	var hdr [2]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return nil, err
	}
	buf := make([]byte, int(hdr[0])<<8|int(hdr[1]))
	if _, err := io.ReadFull(c, buf); err != nil {
		return nil, err
	}
	m, err := reply(buf, id, qname, t)
	if err != nil {
		return nil, err
	}
	if m.Truncated {
		return nil, fmt.Errorf("%s: truncated answer over TCP", server)
	}
	return m, nil
}

// reply decodes a DNS answer and checks that it answers the question asked.
func reply(b []byte, id uint16, qname dnsmessage.Name, t dnsmessage.Type) (*dnsmessage.Message, error) {
	var m dnsmessage.Message
	if err := m.Unpack(b); err != nil {
		return nil, err
	}
	if m.ID != id || !m.Response || len(m.Questions) != 1 || m.Questions[0].Name != qname || m.Questions[0].Type != t {
		return nil, errors.New("answer does not match the question")
	}
	return &m, nil
}

// Addrs returns the addresses that service at domain leads to, as Dial
// would try them, without connecting to any: a route's or an SRV target's
// host name is resolved (by DNS, as SRV targets are) to its addresses. A
// reader uses it to tell whether a store is one the domain publishes.
func (l *Locator) Addrs(ctx context.Context, service, domain string) ([]netip.AddrPort, error) {
	targets, err := l.Targets(ctx, service, domain)
	if err != nil {
		return nil, err
	}
	var out []netip.AddrPort
	for _, t := range targets {
		host, port, err := net.SplitHostPort(t)
		if err != nil {
			continue
		}
		p, err := strconv.ParseUint(port, 10, 16)
		if err != nil {
			continue
		}
		addrs, err := l.hostAddrs(ctx, host)
		if err != nil {
			continue
		}
		for _, a := range addrs {
			out = append(out, netip.AddrPortFrom(a.Unmap(), uint16(p)))
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no address for %s", ErrNoServer, SRVName(service, domain))
	}
	return out, nil
}
