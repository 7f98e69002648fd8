package locate

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"im2000/lib/conf"
	"im2000/lib/locate/locatetest"
)

// closedPort returns a loopback port nothing listens on.
func closedPort(t *testing.T) uint16 {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	p := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return uint16(p)
}

func listen(t *testing.T) (net.Listener, uint16) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return l, uint16(l.Addr().(*net.TCPAddr).Port)
}

func TestSRV(t *testing.T) {
	_, live := listen(t)
	dead := closedPort(t)
	var many []dnsmessage.Resource
	for i := 0; i < 40; i++ {
		many = append(many, locatetest.SRV("_rnasp._tcp.big.test.", 10, 1, live, "host.good.test."))
	}
	d := locatetest.StartDNS(t, map[string][]dnsmessage.Resource{
		"_rnasp._tcp.good.test.": {
			locatetest.SRV("_rnasp._tcp.good.test.", 5, 0, dead, "dead.good.test."),
			locatetest.SRV("_rnasp._tcp.good.test.", 10, 60, live, "b.good.test."),
			locatetest.SRV("_rnasp._tcp.good.test.", 10, 40, live, "c.good.test."),
			locatetest.SRV("_rnasp._tcp.good.test.", 20, 0, live, "gone.good.test."),
		},
		"dead.good.test.":         {locatetest.A("dead.good.test.")},
		"b.good.test.":            {locatetest.A("b.good.test.")},
		"c.good.test.":            {locatetest.RR("c.good.test.", &dnsmessage.AResource{A: [4]byte{127, 0, 0, 2}})},
		"host.good.test.":         {locatetest.A("host.good.test.")},
		"_rnasp._tcp.empty.test.": {locatetest.RR("_rnasp._tcp.empty.test.", &dnsmessage.TXTResource{TXT: []string{"no srv here"}})},
		"_rnasp._tcp.down.test.":  {locatetest.SRV("_rnasp._tcp.down.test.", 1, 0, dead, "dead.good.test.")},
		"_rnasp._tcp.big.test.":   many,
	})
	l := &Locator{Resolvers: []string{d.Addr}, Timeout: 2 * time.Second}
	ctx := context.Background()

	if _, err := l.Targets(ctx, "rnasp", "nosuch.test"); !errors.Is(err, ErrBadDomain) {
		t.Errorf("NXDOMAIN: %v", err)
	}
	if _, err := l.Targets(ctx, "rnasp", "empty.test"); !errors.Is(err, ErrNoService) {
		t.Errorf("empty SRV set: %v", err)
	}
	targets, err := l.Targets(ctx, "rnasp", "big.test") // only fits over TCP
	if err != nil || len(targets) != 40 {
		t.Errorf("truncated UDP answer: %d targets, %v", len(targets), err)
	}

	// Priority first; within priority 10, b (weight 60) before c (weight 40)
	// about 60% of the time; the target without an address is left out.
	bFirst := 0
	const rounds = 2000
	for i := 0; i < rounds; i++ {
		targets, err := l.Targets(ctx, "rnasp", "good.test")
		if err != nil {
			t.Fatal(err)
		}
		if len(targets) != 3 || targets[0] != net.JoinHostPort("127.0.0.1", strconv.Itoa(int(dead))) {
			t.Fatalf("targets = %v", targets)
		}
		if strings.HasPrefix(targets[1], "127.0.0.1:") {
			bFirst++
		}
	}
	if share := float64(bFirst) / rounds; share < 0.52 || share > 0.68 {
		t.Errorf("weight 60 of 100 went first %.0f%% of the time", share*100)
	}

	// Dial skips the unreachable first target.
	c, err := l.Dial(ctx, "rnasp", "good.test")
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	c.Close()
	if _, err := l.Dial(ctx, "rnasp", "down.test"); !errors.Is(err, ErrNoServer) {
		t.Errorf("all targets unreachable: %v", err)
	}

	// A resolver that does not answer is a temporary failure, and not
	// "no service".
	silent := &Locator{Resolvers: []string{net.JoinHostPort("127.0.0.1", strconv.Itoa(int(closedPort(t))))}, Timeout: 300 * time.Millisecond}
	if _, err := silent.Targets(ctx, "rnasp", "good.test"); !errors.Is(err, ErrNoAnswer) || errors.Is(err, ErrNoService) {
		t.Errorf("no DNS answer: %v", err)
	}
}

func TestRoutes(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "routes"), []byte("# private deployment\n_rnasp._tcp.Example.org. 127.0.0.1:4001 127.0.0.1:4002\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "resolvers"), []byte("127.0.0.1:1\n"), 0o644)
	l, err := FromConf(conf.Dir(dir))
	if err != nil {
		t.Fatal(err)
	}
	targets, err := l.Targets(context.Background(), "rnasp", "EXAMPLE.org")
	if err != nil || strings.Join(targets, " ") != "127.0.0.1:4001 127.0.0.1:4002" {
		t.Fatalf("routes: %v, %v", targets, err)
	}
	os.WriteFile(filepath.Join(dir, "routes"), []byte("example.org 127.0.0.1\n"), 0o644)
	if _, err := FromConf(conf.Dir(dir)); err == nil {
		t.Fatal("malformed routes accepted")
	}
}

// FuzzReply decodes arbitrary DNS answers to an SRV question, as they come
// from the network, and orders their SRV records: no panic, and the order
// is RFC 2782's, by priority, with every record once; an answer to another
// question (here nsd's answer for the SOA) is never taken. The committed
// corpus holds answers nsd gave: an SRV set, a truncated one, NXDOMAIN.
func FuzzReply(f *testing.F) {
	qname := dnsmessage.MustNewName("_msrap._tcp.example.org.")
	for _, rcode := range []dnsmessage.RCode{dnsmessage.RCodeSuccess, dnsmessage.RCodeNameError} {
		m := dnsmessage.Message{
			Header:    dnsmessage.Header{ID: 7, Response: true, RCode: rcode, Truncated: rcode != 0},
			Questions: []dnsmessage.Question{{Name: qname, Type: dnsmessage.TypeSRV, Class: dnsmessage.ClassINET}},
			Answers: []dnsmessage.Resource{
				locatetest.SRV(qname.String(), 10, 0, 4000, "a.example.org."),
				locatetest.SRV(qname.String(), 10, 65535, 4001, "b.example.org."),
				locatetest.SRV(qname.String(), 0, 1, 4002, "."),
				locatetest.SRV(qname.String(), 65535, 65535, 4003, "c.example.org."),
				locatetest.A("a.example.org."),
			},
		}
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) < 2 {
			return
		}
		m, err := reply(b, uint16(b[0])<<8|uint16(b[1]), qname, dnsmessage.TypeSRV)
		if err != nil {
			return
		}
		if q := m.Questions[0]; q.Type != dnsmessage.TypeSRV {
			t.Fatalf("an answer to a %v question taken for the SRV answer", q.Type)
		}
		srvs := srvRecords(m.Answers)
		order := Order(srvs)
		if len(order) != len(srvs) {
			t.Fatalf("ordered %d of %d records", len(order), len(srvs))
		}
		seen := map[*dnsmessage.SRVResource]bool{}
		for i, s := range order {
			if seen[s] || s.Target.String() == "." {
				t.Fatalf("record %d: %+v twice, or the \".\" target", i, s)
			}
			seen[s] = true
			if i > 0 && order[i-1].Priority > s.Priority {
				t.Fatalf("priority %d before %d", order[i-1].Priority, s.Priority)
			}
		}
	})
}
