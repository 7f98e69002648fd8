package inbox

import (
	"errors"
	"io"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"im2000/lib/agent"
	"im2000/lib/wire"
	"im2000/lib/wire/msrap"
	"im2000/tests/hostile"
)

// The time a retrieval may take, and one chance per store however the
// store is spelled: the attacks a hostile review found.

// slowStore serves msg in pages of MinPage, each after delay; with
// hangUp it closes the session after each answer.
func slowStore(msg string, delay time.Duration, hangUp bool) func() hostile.Handler {
	return func() hostile.Handler {
		good := pagedStore(msg, MinPage, new(int64), new(sync.Mutex))
		return func(cmd wire.Body) hostile.Answer {
			time.Sleep(delay)
			a := good(cmd)
			a.Close = hangUp
			return a
		}
	}
}

// TestRetrievalTime: a store sending honest pages, each just within the
// timeout, is cut off at the retrieval's time (the timeout and its size at
// MinRate), not after the last page; its chance ends.
func TestRetrievalTime(t *testing.T) {
	msg := "Subject: x\r\n\r\n" + strings.Repeat("y", 2*MinRate-14) // 2 s at MinRate, 8 pages
	s := hostile.Start(t, msrap.Protocol, slowStore(msg, testTimeout*8/10, false))
	b := testInbox(t)
	e := b.add(t, s.Addr, 1, int64(len(msg)), 0)
	e2 := b.add(t, s.Addr, 2, int64(len(msg)), 0)
	start := time.Now()
	_, err := b.RetrieveTo(e, msrap.All, io.Discard)
	d := time.Since(start)
	if !errors.Is(err, ErrTooSlow) || errors.Is(err, ErrDropped) {
		t.Fatalf("err %v, want ErrTooSlow, kept", err)
	}
	if limit := testTimeout + 2*time.Second; d < limit-testTimeout/2 || d > limit+testTimeout/2 {
		t.Errorf("cut off after %v, want about %v", d, limit)
	}
	if _, err := b.RetrieveTo(e2, msrap.All, io.Discard); !errors.Is(err, ErrStoreFailed) {
		t.Errorf("the next entry: %v, want ErrStoreFailed", err)
	}
}

// TestTrickleHangUp: a store hanging up after every page is dialled again
// once in the run, then fails: not once a page.
func TestTrickleHangUp(t *testing.T) {
	msg := "Subject: x\r\n\r\n" + strings.Repeat("y", 5*MinPage)
	s := hostile.Start(t, msrap.Protocol, slowStore(msg, 0, true))
	b := testInbox(t)
	e := b.add(t, s.Addr, 1, int64(len(msg)), 0)
	if _, err := b.RetrieveTo(e, msrap.All, io.Discard); err == nil || errors.Is(err, ErrDropped) {
		t.Fatalf("err %v, want a failure kept for later", err)
	}
	time.Sleep(100 * time.Millisecond) // the tarpit counts a session once it has accepted it
	if n := s.Sessions(); n > 2 {
		t.Errorf("%d sessions, want at most 2", n)
	}
}

// TestSetDeadline: the Inbox's deadline (a POP3 session's end) cuts a
// retrieval short, well before the retrieval's own time.
func TestSetDeadline(t *testing.T) {
	msg := "Subject: x\r\n\r\n" + strings.Repeat("y", 5*MinPage)
	s := hostile.Start(t, msrap.Protocol, slowStore(msg, testTimeout/4, false))
	b := testInbox(t)
	e := b.add(t, s.Addr, 1, int64(len(msg)), 0)
	start := time.Now()
	b.SetDeadline(start.Add(testTimeout / 2))
	_, err := b.RetrieveTo(e, msrap.All, io.Discard)
	if d := time.Since(start); !errors.Is(err, ErrTooSlow) || d > testTimeout*3/4 {
		t.Errorf("after %v: %v, want ErrTooSlow at %v", d, err, testTimeout/2)
	}
	if err := b.Silence(e); !errors.Is(err, ErrStoreFailed) {
		t.Errorf("a call after the deadline: %v", err)
	}
}

// TestOneChanceWhateverTheSpelling: "A", "A A", "[::ffff:A]", and
// domains whose store is A, from several sender domains: one tarpit, one
// chance, one timeout.
func TestOneChanceWhateverTheSpelling(t *testing.T) {
	s := hostile.Start(t, msrap.Protocol, func() hostile.Handler {
		return func(wire.Body) hostile.Answer { return hostile.Answer{Silent: true} }
	})
	ap := netip.MustParseAddrPort(s.Addr)
	mapped := netip.AddrPortFrom(netip.AddrFrom16(ap.Addr().As16()), ap.Port())
	b := testInbox(t)
	b.loc.Routes["_msrap._tcp.tarpit.example"] = []string{s.Addr}
	lit := func(as ...netip.AddrPort) wire.ServiceLocation { return wire.ServiceLocation{Literals: as} }
	var es []agent.Entry
	for i, c := range []struct {
		l      wire.ServiceLocation
		domain string
	}{
		{lit(ap), "one.example"},
		{lit(ap, ap), "one.example"},
		{lit(mapped), "One.Example"},
		{wire.ServiceLocation{Domain: wire.DomainName{"Tarpit", "EXAMPLE"}}, "two.example"},
		{lit(ap, mapped, ap), "three.example"},
		{wire.ServiceLocation{Domain: wire.DomainName{"tarpit", "example"}}, "four.example"},
	} {
		es = append(es, b.addAt(t, c.l, c.domain, byte(i), 10, 0))
	}
	if k := locationKey(es[2].N.Notification.StoreClear); k != s.Addr || locationKey(es[1].N.Notification.StoreClear) != k {
		t.Errorf("location keys %q, %q, want %q", k, locationKey(es[1].N.Notification.StoreClear), s.Addr)
	}
	start := time.Now()
	for _, e := range es { // in order, as one POP3 session goes
		_, err := b.RetrieveTo(e, msrap.All, io.Discard)
		if err == nil {
			t.Errorf("%s: retrieved from a tarpit", e.N.Notification.StoreClear)
		}
	}
	// The first domain form reaches the same address: it dials it (a
	// connection, no command), and ends there.
	if d := time.Since(start); d > 3*testTimeout/2 {
		t.Errorf("took %v, timeout %v", d, testTimeout)
	}
	time.Sleep(100 * time.Millisecond) // the tarpit counts a session once it has accepted it
	if n := s.Sessions(); n > 2 {
		t.Errorf("%d sessions, want at most 2", n)
	}
	for _, e := range es {
		if _, err := b.RetrieveTo(e, msrap.All, io.Discard); !errors.Is(err, ErrStoreFailed) {
			t.Errorf("%s: %v, want ErrStoreFailed", e.N.Notification.StoreClear, err)
		}
	}
}
