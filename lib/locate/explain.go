package locate

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	"golang.org/x/net/dns/dnsmessage"
)

// Server is one server that a service's location leads to: a routes
// entry, or an SRV record with the addresses of its target.
type Server struct {
	Priority, Weight uint16   // the SRV record's; 0 for a route
	Target           string   // the SRV target or the route's host
	Port             uint16   // the SRV record's port; 0 for a route (it is in Addrs)
	Addrs            []string // host:port, as Dial tries them
	Err              error    // why the target has no address
}

// Found is what locating a service found, for an admin to read
// (im2000-locate): where it came from, and every server in the order
// Dial tries them.
type Found struct {
	Name       string // the SRV name, _service._tcp.domain
	FromRoutes bool   // a routes entry, not DNS
	Servers    []Server
}

// Explain locates service at domain as Targets does, and says how: from
// the routes file or DNS, and for DNS each SRV record in RFC 2782 order
// with its target's addresses (or why it has none). Its errors are
// Targets' (ErrBadDomain, ErrNoService, ErrNoAnswer), except that targets without
// addresses are listed, not an error. It connects to nothing.
func (l *Locator) Explain(ctx context.Context, service, domain string) (*Found, error) {
	f := &Found{Name: SRVName(service, domain)}
	if r, ok := l.Routes[f.Name]; ok {
		f.FromRoutes = true
		for _, a := range r {
			host, _, _ := net.SplitHostPort(a)
			f.Servers = append(f.Servers, Server{Target: host, Addrs: []string{a}})
		}
		return f, nil
	}
	if _, err := l.Targets(ctx, service, domain); err != nil && !errors.Is(err, ErrNoServer) {
		return nil, err // the kinds of failure, told as Targets tells them
	}
	_, answers, err := l.query(ctx, f.Name, dnsmessage.TypeSRV)
	if err != nil { // answered a moment ago, not now
		return nil, fmt.Errorf("%w: %s: %v", ErrNoAnswer, f.Name, err)
	}
	for _, s := range Order(srvRecords(answers)) {
		sv := Server{Priority: s.Priority, Weight: s.Weight, Target: strings.TrimSuffix(s.Target.String(), "."), Port: s.Port}
		addrs, err := l.hostAddrs(ctx, s.Target.String())
		sv.Err = err
		for _, a := range addrs {
			sv.Addrs = append(sv.Addrs, net.JoinHostPort(a.String(), strconv.Itoa(int(s.Port))))
		}
		f.Servers = append(f.Servers, sv)
	}
	return f, nil
}
