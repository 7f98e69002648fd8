// SRV answers and their targets: the records an answer holds, their RFC
// 2782 order, and the addresses of a target host.

package locate

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sort"
	"strings"

	"golang.org/x/net/dns/dnsmessage"
)

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
