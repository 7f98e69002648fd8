package binding

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"im2000/lib/conf"
	"im2000/lib/locate"
	"im2000/lib/locate/locatetest"
	"im2000/lib/wire"
	"im2000/lib/wire/rnasp"
)

func checker(t *testing.T, routes map[string][]string, resolvers []string, listfile string) *Checker {
	t.Helper()
	dir := t.TempDir()
	if listfile != "" {
		os.WriteFile(filepath.Join(dir, "listfile"), []byte(listfile), 0o600)
	}
	c, err := New(&locate.Locator{Routes: routes, Resolvers: resolvers, Timeout: time.Second}, conf.Dir(dir))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func at(s string) wire.ServiceLocation {
	l, err := wire.ParseLocation(s)
	if err != nil {
		panic(err)
	}
	return l
}

// TestBinding: each way a claim is verified, and each way it is not.
func TestBinding(t *testing.T) {
	dns := locatetest.StartDNS(t, map[string][]dnsmessage.Resource{
		"_msrap._tcp.dns.example.": {locatetest.SRV("_msrap._tcp.dns.example.", 0, 0, 4100, "store.dns.example.")},
		"store.dns.example.":       {locatetest.A("store.dns.example.")},
		"bank.example.":            {locatetest.A("bank.example.")}, // exists, publishes no store
	})
	routes := map[string][]string{
		"_msrap._tcp.example.org":  {"127.0.0.1:4002", "[::1]:4002"},
		"_msraps._tcp.example.com": {"127.0.0.9:4443"},
	}
	c := checker(t, routes, []string{dns.Addr}, "# lists\ngolang 127.0.0.1:4002\nNews lists.example backfill\nbad\n")
	for _, tc := range []struct {
		sender, where string
		ok            bool
		why           string
	}{
		{"alice@example.org", "127.0.0.1:4002", true, ""},
		{"alice@EXAMPLE.org", "127.0.0.1:4002 [::1]:4002", true, ""},
		{"alice@example.org", "example.org", true, ""},
		{"alice@example.org", "EXAMPLE.ORG.", true, ""},
		{"carol@example.com", "127.0.0.9:4443", true, ""},    // by _msraps._tcp
		{"dave@dns.example", "127.0.0.1:4100", true, ""},     // by DNS SRV and A
		{"golang@lists.invalid", "127.0.0.1:4002", true, ""}, // the reader's listd
		{"GoLang@lists.invalid", "127.0.0.1:4002", true, ""},
		{"news@lists.example", "lists.example", true, ""},
		{"golang", "127.0.0.1:4002", true, ""}, // an older listd's bare list name

		{"ceo@bank.example", "127.0.0.1:5555", false, "_msrap._tcp.bank.example"},
		{"ceo@bank.example", "evil.example", false, "not the sender's domain"},
		{"alice@example.org", "127.0.0.1:5555", false, "does not lead to"},
		{"alice@example.org", "127.0.0.1:4002 127.0.0.1:5555", false, "does not lead to"},
		{"alice@example.org", "127.0.0.1:4003", false, "does not lead to"},
		{"dave@dns.example", "127.0.0.2:4100", false, "does not lead to"},
		{"alice@example.org", "sub.example.org", false, "not the sender's domain"},
		{"golang@lists.invalid", "127.0.0.1:5555", false, "follows list golang at 127.0.0.1:4002"},
		{"other@lists.invalid", "127.0.0.1:4002", false, "no list other"},
		{"news@lists.example", "127.0.0.1:4002", false, "follows list news at lists.example"},
		{"golang", "127.0.0.1:5555", false, "follows list golang"},
		{"other", "127.0.0.1:4002", false, "not a valid mailbox"},
		{"ceo@bank.example\nFrom x", "bank.example", false, "not a valid mailbox"},
		{"ceo\r@bank.example", "bank.example", false, "not a valid mailbox"},
		{"\x1b[31mceo@bank.example", "bank.example", false, "not a valid mailbox"},
		{"ceo\x00@bank.example", "bank.example", false, "not a valid mailbox"},
		{strings.Repeat("a", 1000) + "@bank.example", "bank.example", false, "1013 octets"},
		{"", "bank.example", false, "not a valid mailbox"},
	} {
		n := &rnasp.Notification{StoreClear: at(tc.where), Sender: tc.sender}
		got, err := c.Check(context.Background(), n)
		if tc.ok != (err == nil) {
			t.Errorf("%q at %s: %v, want verified %v", tc.sender, tc.where, err, tc.ok)
			continue
		}
		if !tc.ok && (!errors.Is(err, ErrUnverified) || !strings.Contains(err.Error(), tc.why)) {
			t.Errorf("%q at %s: %v, want ErrUnverified saying %q", tc.sender, tc.where, err, tc.why)
		}
		if tc.ok && got.Domain == "" {
			t.Errorf("%q at %s: verified as %v", tc.sender, tc.where, got)
		}
	}
	// A storessl location must bind too.
	ssl := at("127.0.0.1:5555")
	n := &rnasp.Notification{StoreClear: at("127.0.0.1:4002"), StoreSSL: &ssl, Sender: "alice@example.org"}
	if _, err := c.Check(context.Background(), n); !errors.Is(err, ErrUnverified) {
		t.Errorf("a storessl elsewhere: %v", err)
	}
	// An IPv4-mapped address is its IPv4 address.
	n = &rnasp.Notification{StoreClear: wire.ServiceLocation{Literals: []wire.AddrPort{netip.MustParseAddrPort("[::ffff:127.0.0.1]:4002")}}, Sender: "alice@example.org"}
	if _, err := c.Check(context.Background(), n); err != nil {
		t.Errorf("an IPv4-mapped address: %v", err)
	}
}

// TestBindingLooksUpOnce: many claims for one domain cost one lookup of
// each service (an SRV question, and the domain's SOA, A, AAAA and MX
// when the SRV name does not exist).
func TestBindingLooksUpOnce(t *testing.T) {
	dns := locatetest.StartDNS(t, map[string][]dnsmessage.Resource{})
	c := checker(t, nil, []string{dns.Addr}, "")
	for i := 0; i < 50; i++ {
		n := &rnasp.Notification{StoreClear: at("127.0.0.1:5555"), Sender: "ceo@bank.example"}
		if _, err := c.Check(context.Background(), n); !errors.Is(err, ErrUnverified) {
			t.Fatal(err)
		}
	}
	if udp, tcp := dns.Queries(); udp+tcp > 10 {
		t.Errorf("%d DNS queries for 50 claims of one domain", udp+tcp)
	}
}
