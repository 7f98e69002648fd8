// Package locate finds the server of an IM2000 service for a domain
// (DESIGN.md section 3): a static routes file first, like qmail's
// smtproutes, else DNS SRV records (_msoap._tcp, _msrap._tcp, _rnasp._tcp,
// _rnaqp._tcp) in RFC 2782 order. It tells permanent failures (the domain
// does not exist) from temporary ones (no records, no answer, no server
// reachable, no DNS answer), as the IM2000 algorithm needs for baddomain,
// noservice and noserver.
//
// It speaks DNS itself, with golang.org/x/net/dns/dnsmessage, because Go's
// resolver reports a name that does not exist and a name without SRV
// records the same way.
package locate

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"im2000/lib/tlsconf"
)

var (
	// ErrBadDomain: the domain does not exist (NXDOMAIN). Permanent.
	ErrBadDomain = errors.New("domain does not exist")
	// ErrNoService: no route, and DNS answered that the domain exists
	// without SRV records (NXDOMAIN or no data for the SRV name, NOERROR
	// for the domain). Temporary; the one failure that says the domain
	// publishes no IM2000 service, so the one a caller may send elsewhere
	// (notifyd's smarthost).
	ErrNoService = errors.New("no service record")
	// ErrNoAnswer: a question that decides the lookup got no answer (no
	// reply, SERVFAIL, REFUSED, no resolvers): nothing is known about the
	// service. Temporary, and never ErrNoService: whoever can drop a
	// datagram could otherwise make a domain that publishes IM2000 look
	// like one that does not.
	ErrNoAnswer = errors.New("no DNS answer")
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

// SRVName is the name looked up for service ("rnasp") at domain.
func SRVName(service, domain string) string {
	return "_" + service + "._tcp." + strings.ToLower(strings.TrimSuffix(domain, "."))
}

// Targets returns the addresses to try for service at domain, in order.
func (l *Locator) Targets(ctx context.Context, service, domain string) ([]string, error) {
	out, nx, err := l.srvTargets(ctx, service, domain)
	if nx {
		return nil, l.absent(ctx, service, domain)
	}
	return out, err
}

// absent is the error for service at domain once its SRV name was answered
// NXDOMAIN. Authoritative servers say NXDOMAIN for any owner name they do
// not have, so that only says there is no such service; whether the
// domain itself exists is another question, asked here.
func (l *Locator) absent(ctx context.Context, service, domain string) error {
	name := SRVName(service, domain)
	dom := strings.ToLower(strings.TrimSuffix(domain, "."))
	exists, err := l.exists(ctx, dom)
	switch {
	case err != nil:
		return fmt.Errorf("%w: %s does not exist, and whether %s does is unknown: %v", ErrNoAnswer, name, dom, err)
	case !exists:
		return fmt.Errorf("%w: %s", ErrBadDomain, dom)
	}
	return fmt.Errorf("%w: %s exists but has no %s", ErrNoService, dom, name)
}

// srvTargets is the route or the SRV answer for service at domain; nx
// (with no error) when the SRV name was answered NXDOMAIN, which only
// absent can tell the meaning of.
func (l *Locator) srvTargets(ctx context.Context, service, domain string) (targets []string, nx bool, err error) {
	name := SRVName(service, domain)
	if r, ok := l.Routes[name]; ok {
		return r, false, nil
	}
	if err := notAddress(domain); err != nil { // where.go
		return nil, false, err
	}
	rcode, answers, err := l.query(ctx, name, dnsmessage.TypeSRV)
	if err != nil {
		return nil, false, fmt.Errorf("%w: %s: %v", ErrNoAnswer, name, err)
	}
	if rcode == dnsmessage.RCodeNameError {
		return nil, true, nil
	}
	srvs := srvRecords(answers)
	if len(srvs) == 0 { // NOERROR for a name under the domain: it exists
		return nil, false, fmt.Errorf("%w: %s has no SRV records", ErrNoService, name)
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
		return nil, false, fmt.Errorf("%w: no target of %s has an address (%s)", ErrNoServer, name, strings.Join(why, "; "))
	}
	return out, false, nil
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
