package locate

import (
	"errors"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"im2000/lib/locate/locatetest"
	"im2000/lib/tlsconf"
	"im2000/lib/tlsconf/tlstest"
)

// TestDialAsksBothFormsAtOnce: the cleartext SRV question does not wait
// for the TLS one. good.test publishes only a cleartext form, and a relay
// loses every question of its TLS form, as a lame server or a path that
// drops them does. Before, the TLS question's tries (the locator's whole
// timeout) all went out before the cleartext question was sent, so a
// caller with less time left than that got "no DNS answer"; now the
// cleartext question goes out beside the first TLS try, and the domain is
// still reached in cleartext. Where TLS is required (tlsrequire, or the
// domain reached over TLS before) the cleartext answer is still refused.
func TestDialAsksBothFormsAtOnce(t *testing.T) {
	ca := tlstest.NewCA(t)
	clearAddr := serve(t, nil, "clear")
	_, p, _ := net.SplitHostPort(clearAddr)
	port, _ := strconv.Atoi(p)
	d := locatetest.StartDNS(t, map[string][]dnsmessage.Resource{
		"good.test.":             {locatetest.A("good.test.")},
		"_rnasp._tcp.good.test.": {locatetest.SRV("_rnasp._tcp.good.test.", 0, 0, uint16(port), "host.good.test.")},
		"host.good.test.":        {locatetest.A("host.good.test.")},
	})
	relay := locatetest.StartRelay(t, d.Addr, 0)
	var mu sync.Mutex
	tlsTries, triesBeforeClear := 0, -1 // TLS tries lost; of those, how many before the first cleartext question
	relay.Lose(func(q dnsmessage.Question) bool {
		mu.Lock()
		defer mu.Unlock()
		switch name := strings.ToLower(q.Name.String()); {
		case q.Type != dnsmessage.TypeSRV:
		case name == "_rnasps._tcp.good.test.":
			tlsTries++
			return true
		case name == "_rnasp._tcp.good.test." && triesBeforeClear < 0:
			triesBeforeClear = tlsTries
		}
		return false
	})
	locator := func(require ...string) *Locator {
		return &Locator{Resolvers: []string{relay.Addr}, Timeout: 2 * time.Second,
			TLS: tlsconf.NewClient(ca.Pool(), require, &tlsconf.Tracker{Dir: t.TempDir()})}
	}

	if got, err := dialed(t, locator()); got != "clear" {
		t.Fatalf("TLS question lost, cleartext form answered: %q, %v; want cleartext", got, err)
	}
	mu.Lock()
	t.Logf("TLS tries lost before the cleartext question: %d of %d", triesBeforeClear, tlsTries)
	if triesBeforeClear < 0 || triesBeforeClear >= tlsTries {
		t.Errorf("the cleartext SRV question was sent after %d of the TLS question's %d tries, not beside the first", triesBeforeClear, tlsTries)
	}
	mu.Unlock()

	l := locator("good.test")
	if _, err := dialed(t, l); !errors.Is(err, tlsconf.ErrDowngrade) {
		t.Errorf("tlsrequire, TLS question lost, cleartext answered: %v, want a downgrade", err)
	}
	l = locator()
	if err := l.TLS.Reached("rnasp", "good.test"); err != nil {
		t.Fatal(err)
	}
	if _, err := dialed(t, l); !errors.Is(err, tlsconf.ErrDowngrade) {
		t.Errorf("reached over TLS before, TLS question lost, cleartext answered: %v, want a downgrade", err)
	}
}
