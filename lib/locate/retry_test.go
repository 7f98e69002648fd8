package locate

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"im2000/lib/locate/locatetest"
)

// silentResolver is a UDP socket that takes queries and never answers, like
// a resolver behind a link that drops everything.
func silentResolver(t *testing.T) string {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc.LocalAddr().String()
}

// slowResolver answers only the first query it gets, after delay, with
// upstream's answer: a resolver that is slow, not dead.
func slowResolver(t *testing.T, upstream string, delay time.Duration) string {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 65536)
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		up, err := net.Dial("udp", upstream)
		if err != nil {
			return
		}
		defer up.Close()
		up.SetDeadline(time.Now().Add(5 * time.Second))
		up.Write(buf[:n])
		if n, err = up.Read(buf); err != nil {
			return
		}
		time.Sleep(delay)
		pc.WriteTo(buf[:n], from)
	}()
	return pc.LocalAddr().String()
}

func zone(t *testing.T) *locatetest.Server {
	_, live := listen(t)
	return locatetest.StartDNS(t, map[string][]dnsmessage.Resource{
		"_rnasp._tcp.good.test.": {locatetest.SRV("_rnasp._tcp.good.test.", 10, 0, live, "host.good.test.")},
		"host.good.test.":        {locatetest.A("host.good.test.")},
		"good.test.":             {locatetest.A("good.test.")},
		// exists, publishes an address and no IM2000 service
		"plain.test.": {locatetest.A("plain.test.")},
		// exists without records of its own (only below it)
		"www.hollow.test.": {locatetest.A("www.hollow.test.")},
		"hollow.test.":     {},
	})
}

// TestRetransmit: one and two lost datagrams are recovered by retrying;
// three lost (every try of the one resolver) are a temporary failure
// within the Timeout.
func TestRetransmit(t *testing.T) {
	d := zone(t)
	l := &Locator{Resolvers: []string{d.Addr}, Timeout: 700 * time.Millisecond}
	for drop := 0; drop <= 2; drop++ {
		d.DropUDP(drop)
		u0, _ := d.Queries()
		start := time.Now()
		targets, err := l.Targets(t.Context(), "rnasp", "good.test")
		if err != nil || len(targets) != 1 {
			t.Fatalf("%d datagrams lost: %v, %v", drop, targets, err)
		}
		u1, _ := d.Queries()
		// the SRV question, then AAAA and A of the target
		if u1-u0 != drop+3 {
			t.Errorf("%d datagrams lost: %d queries, want %d", drop, u1-u0, drop+3)
		}
		t.Logf("%d first datagrams lost: found in %v", drop, time.Since(start))
	}
	d.DropUDP(3)
	start := time.Now()
	if _, err := l.Targets(t.Context(), "rnasp", "good.test"); !errors.Is(err, ErrNoAnswer) {
		t.Fatalf("every try lost: %v", err)
	} else {
		t.Logf("every try lost: %v", err)
	}
	if took := time.Since(start); took < 500*time.Millisecond || took > 1500*time.Millisecond {
		t.Errorf("gave up after %v, want about the Timeout (700ms)", took)
	}
}

// TestRotate: a resolver that does not answer, one that refuses (ICMP) and
// one that answers SERVFAIL are passed over for the next one; a late answer
// to an early try still counts.
func TestRotate(t *testing.T) {
	d := zone(t)
	sick := locatetest.StartDNS(t, nil)
	sick.ServFail("_rnasp._tcp.good.test.")
	refusing := net.JoinHostPort("127.0.0.1", strconv.Itoa(int(closedPort(t))))
	for _, tc := range []struct {
		name      string
		resolvers []string
		within    time.Duration
	}{
		{"silent first", []string{silentResolver(t), d.Addr}, 2 * time.Second},
		{"refusing first", []string{refusing, d.Addr}, 300 * time.Millisecond},
		{"SERVFAIL first", []string{sick.Addr, d.Addr}, 300 * time.Millisecond},
		// One resolver, slow: its answer comes after the first try's
		// wait (about 0.7 s of 5 s) and is still taken.
		{"slow", []string{slowResolver(t, d.Addr, 1200*time.Millisecond)}, 2 * time.Second},
	} {
		l := &Locator{Resolvers: tc.resolvers, Timeout: 5 * time.Second}
		start := time.Now()
		_, _, err := l.query(t.Context(), "_rnasp._tcp.good.test", dnsmessage.TypeSRV)
		took := time.Since(start)
		if err != nil || took > tc.within {
			t.Errorf("%s: %v after %v (want an answer within %v)", tc.name, err, took, tc.within)
		}
		t.Logf("%s: answered in %v", tc.name, took)
	}
	// The slow resolver is asked again before it answers.
	slowUp := locatetest.StartDNS(t, map[string][]dnsmessage.Resource{"x.test.": {locatetest.A("x.test.")}})
	l := &Locator{Resolvers: []string{slowResolver(t, slowUp.Addr, 500*time.Millisecond)}, Timeout: 700 * time.Millisecond}
	if _, _, err := l.query(t.Context(), "x.test", dnsmessage.TypeA); err != nil {
		t.Errorf("slow resolver with short tries: %v", err)
	}
	// Every resolver SERVFAIL: no long wait, a temporary failure.
	l = &Locator{Resolvers: []string{sick.Addr}, Timeout: 5 * time.Second}
	start := time.Now()
	if _, err := l.Targets(t.Context(), "rnasp", "good.test"); !errors.Is(err, ErrNoAnswer) || time.Since(start) > time.Second {
		t.Errorf("SERVFAIL: %v after %v", err, time.Since(start))
	}
}

// TestNoSuchName: NXDOMAIN for the SRV name is only the end when the domain
// itself does not exist.
func TestNoSuchName(t *testing.T) {
	d := zone(t)
	d.ServFail("flaky.test.")
	l := &Locator{Resolvers: []string{d.Addr}, Timeout: 2 * time.Second}
	for _, tc := range []struct {
		domain string
		want   error
	}{
		{"plain.test", ErrNoService},  // exists: NOERROR for its SOA question, no data
		{"hollow.test", ErrNoService}, // an empty non-terminal exists too
		{"PLAIN.test.", ErrNoService},
		{"nosuch.test", ErrBadDomain},
		{"flaky.test", ErrNoAnswer}, // cannot tell: temporary, and not "no service"
		{"good.test", nil},
	} {
		_, err := l.Targets(t.Context(), "rnasp", tc.domain)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.domain, err, tc.want)
		}
	}
	// The same with lost datagrams: two tries of the SRV question, then
	// the first of the SOA question.
	d.DropUDP(2)
	if _, err := l.Targets(t.Context(), "rnasp", "plain.test"); !errors.Is(err, ErrNoService) || !strings.Contains(err.Error(), "exists") {
		t.Errorf("plain.test with loss: %v", err)
	}
	d.DropUDP(1)
	if _, err := l.Targets(t.Context(), "rnasp", "nosuch.test"); !errors.Is(err, ErrBadDomain) {
		t.Errorf("nosuch.test with loss: %v", err)
	}
}

// TestBounded: the caller's context ends a lookup, whatever the Timeout.
func TestBounded(t *testing.T) {
	l := &Locator{Resolvers: []string{silentResolver(t), silentResolver(t)}, Timeout: time.Minute}
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := l.Targets(ctx, "rnasp", "good.test")
	if !errors.Is(err, ErrNoAnswer) {
		t.Errorf("no answer: %v", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("took %v with a 300ms context", took)
	}
}

func TestBackoff(t *testing.T) {
	for _, tc := range []struct {
		budget time.Duration
		n      int
		want   []time.Duration
	}{
		{7 * time.Second, 3, []time.Duration{time.Second, 2 * time.Second, 4 * time.Second}},
		{31 * time.Second, 6, []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 8 * time.Second, 8 * time.Second}},
	} {
		got := backoff(tc.budget, tc.n)
		if len(got) != len(tc.want) {
			t.Fatalf("backoff(%v, %d) = %v", tc.budget, tc.n, got)
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Fatalf("backoff(%v, %d) = %v, want %v", tc.budget, tc.n, got, tc.want)
			}
		}
	}
	var sum time.Duration
	for _, w := range backoff(5*time.Second, 3) {
		sum += w
	}
	if sum > 5*time.Second || sum < 4900*time.Millisecond {
		t.Errorf("3 tries in 5 s add up to %v", sum)
	}
}
