package locate

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"im2000/lib/locate/locatetest"
)

// TestAddressNotDomain: an address without its port (a setting such as
// rna written "127.0.0.1") is refused as an address, permanently, before
// any DNS question, rather than looked up as a domain.
func TestAddressNotDomain(t *testing.T) {
	l := &Locator{} // no resolvers: a DNS question would fail otherwise
	for _, d := range []string{"127.0.0.1", "::1", "[2001:db8::1]", "192.0.2.1.", "mx.example.org:"} {
		_, err := l.Targets(context.Background(), "rnaqp", d)
		if !errors.Is(err, ErrBadDomain) || !strings.Contains(err.Error(), "port") {
			t.Errorf("%s: %v", d, err)
		}
	}
	if _, err := l.Targets(context.Background(), "rnaqp", "example.org"); errors.Is(err, ErrBadDomain) || !strings.Contains(err.Error(), "no DNS resolvers") {
		t.Errorf("a domain: %v", err)
	}
}

// TestNoServerSaysWhy: when no SRV target has an address, the noserver
// error names each target and why it has none, so the admin knows which
// address record is missing; and Explain shows the same per server.
func TestNoServerSaysWhy(t *testing.T) {
	d := locatetest.StartDNS(t, map[string][]dnsmessage.Resource{
		"_rnasp._tcp.noaddr.test.": {
			locatetest.SRV("_rnasp._tcp.noaddr.test.", 10, 0, 4003, "mx1.noaddr.test."),
			locatetest.SRV("_rnasp._tcp.noaddr.test.", 20, 0, 4003, "mx2.noaddr.test."),
		},
		"mx1.noaddr.test.": {locatetest.RR("mx1.noaddr.test.", &dnsmessage.TXTResource{TXT: []string{"no address"}})},
	})
	l := &Locator{Resolvers: []string{d.Addr}, Timeout: 2 * time.Second}
	_, err := l.Targets(context.Background(), "rnasp", "noaddr.test")
	if !errors.Is(err, ErrNoServer) || !strings.Contains(err.Error(), "mx1.noaddr.test. has no address") || !strings.Contains(err.Error(), "mx2.noaddr.test. has no address") {
		t.Errorf("no target with an address: %v", err)
	}
	f, err := l.Explain(context.Background(), "rnasp", "noaddr.test")
	if err != nil || len(f.Servers) != 2 || f.Servers[0].Target != "mx1.noaddr.test" || f.Servers[0].Err == nil || f.Servers[1].Priority != 20 || f.FromRoutes {
		t.Errorf("Explain: %+v, %v", f, err)
	}
}
