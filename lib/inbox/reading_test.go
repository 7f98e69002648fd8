package inbox

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"im2000/lib/addr"
	"im2000/lib/agent"
	"im2000/lib/locate"
	"im2000/lib/msgid"
	"im2000/lib/wire"
	"im2000/lib/wire/msrap"
	"im2000/lib/wire/rnaqp"
	"im2000/lib/wire/rnasp"
	"im2000/tests/hostile"
)

// The unit tests of bounded reading: an Inbox whose senders are taken as
// verified (the binding check has its own tests), and fake stores
// (tests/hostile) that behave or not.

const testTimeout = time.Second

// testInbox is an Inbox with a pending queue in a temporary directory.
func testInbox(t *testing.T) *Inbox {
	t.Helper()
	dir := t.TempDir()
	pending, err := agent.Open(dir, true)
	if err == nil {
		err = os.Mkdir(filepath.Join(dir, "pending"), 0o700)
	}
	if err != nil {
		t.Fatal(err)
	}
	b := &Inbox{loc: &locate.Locator{Routes: map[string][]string{}, Timeout: testTimeout}, pending: pending,
		timeout: testTimeout, max: 1 << 20, life: time.Hour, me: "reader.example", now: time.Now,
		stores: map[string]*store{}, failedAt: map[string]error{}, senders: map[string]addr.Mailbox{}}
	t.Cleanup(b.Close)
	return b
}

// add queues a notification of message id at the store at where, with a
// size when size >= 0, notified age ago; the sender counts as verified.
// Each store has a domain of its own (its port's): one chance per store is
// one chance per sender domain too.
func (b *Inbox) add(t *testing.T, where string, id byte, size int64, age time.Duration) agent.Entry {
	t.Helper()
	ap := netip.MustParseAddrPort(where)
	return b.addAt(t, wire.ServiceLocation{Literals: []wire.AddrPort{ap}}, fmt.Sprintf("p%d.example", ap.Port()), id, size, age)
}

// addAt is add with the location and the sender's domain given.
func (b *Inbox) addAt(t *testing.T, l wire.ServiceLocation, domain string, id byte, size int64, age time.Duration) agent.Entry {
	t.Helper()
	n := rnaqp.NotificationAndLocalData{Notification: rnasp.Notification{
		StoreClear: l, ID: msgid.ID{0xaa, id}, Sender: "alice@" + domain}, Date: uint64(time.Now().Add(-age).Unix())}
	if size >= 0 {
		s := uint64(size)
		n.Notification.Size = &s
	}
	if err := b.pending.Put("pending", &n); err != nil {
		t.Fatal(err)
	}
	b.senders[agent.Key(&n)] = addr.Mailbox{Local: "alice", Domain: domain}
	for _, e := range b.mustPending(t) {
		if e.N.Notification.ID == n.Notification.ID && e.N.Notification.StoreClear.String() == n.Notification.StoreClear.String() {
			return e
		}
	}
	t.Fatal("the entry is not pending")
	return agent.Entry{}
}

func (b *Inbox) mustPending(t *testing.T) []agent.Entry {
	l, err := b.Pending()
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func (b *Inbox) isPending(t *testing.T, e agent.Entry) bool {
	for _, p := range b.mustPending(t) {
		if p.Name == e.Name {
			return true
		}
	}
	return false
}

// pagedStore serves msg in pages of at most page octets, and counts
// the retrievals.
func pagedStore(msg string, page int, retrievals *int64, mu *sync.Mutex) hostile.Handler {
	return func(cmd wire.Body) hostile.Answer {
		switch c := cmd.(type) {
		case *msrap.Retrieve:
			mu.Lock()
			*retrievals++
			mu.Unlock()
			off := min(int(c.Offset), len(msg))
			end := min(off+page, len(msg))
			return hostile.Respond(&msrap.RetrieveOK{Data: []byte(msg[off:end]), Size: uint64(len(msg))})
		case *msrap.QuerySize:
			return hostile.Respond(&msrap.QuerySizeOK{Size: uint64(len(msg))})
		case *msrap.Silence:
			return hostile.Respond(msrap.SilenceOK{})
		}
		return hostile.Answer{Close: true}
	}
}

// TestRetrieveToStreams: a message of several pages arrives whole, with
// the trace fields on top and the store's Return-Path gone, page by page.
func TestRetrieveToStreams(t *testing.T) {
	body := strings.Repeat("0123456789abcdef\r\n", 20000) // 360,000 octets
	msg := "Return-Path: <ceo@bank.example>\r\nFrom: alice@example.org\r\nSubject: big\r\n\r\n" + body
	var n int64
	var mu sync.Mutex
	s := hostile.Start(t, msrap.Protocol, func() hostile.Handler { return pagedStore(msg, 50000, &n, &mu) })
	b := testInbox(t)
	e := b.add(t, s.Addr, 1, int64(len(msg)), 0)
	var out bytes.Buffer
	written, err := b.RetrieveTo(e, msrap.All, &out)
	if err != nil {
		t.Fatal(err)
	}
	got := out.String()
	if written != int64(len(got)) || !strings.HasPrefix(got, "Return-Path: <"+e.N.Notification.Sender+">\r\nReceived: from [127.0.0.1]") ||
		strings.Contains(got, "ceo@bank") || !strings.HasSuffix(got, "\r\n\r\n"+body) {
		t.Fatalf("retrieved %d octets (said %d), starting %q", len(got), written, got[:min(len(got), 300)])
	}
	if want := int64((len(msg) + 49999) / 50000); n != want {
		t.Errorf("%d retrievals, want %d (one a page)", n, want)
	}
	if !b.isPending(t, e) {
		t.Error("a retrieved entry left the pending queue (only Done takes it off)")
	}
	// The header alone, as POP3's TOP n 0 asks.
	var head bytes.Buffer
	if _, err := b.RetrieveTo(e, msrap.HeadersOnly, &head); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(head.String(), "Return-Path: <"+e.N.Notification.Sender+">\r\n") {
		t.Errorf("headers only: %q", head.String())
	}
}

// TestRetrieveToRefuses: a store breaking a retrieval's bounds is refused
// at once, for the reason the case is about (each case breaks one bound
// only), the entry dropped; other entries at that store are still tried.
func TestRetrieveToRefuses(t *testing.T) {
	endless := func(size uint64) func(*msrap.Retrieve) hostile.Answer {
		return func(*msrap.Retrieve) hostile.Answer {
			return hostile.Respond(&msrap.RetrieveOK{Data: bytes.Repeat([]byte("x"), 1<<20), Size: size})
		}
	}
	// A good message of 40,000 octets, served by a store that misbehaves
	// on one page.
	good := []byte("Subject: good\r\n\r\n" + strings.Repeat("b", 40000-17))
	serve := func(page func(off uint64) ([]byte, uint64)) func(*msrap.Retrieve) hostile.Answer {
		return func(c *msrap.Retrieve) hostile.Answer {
			data, size := page(c.Offset)
			return hostile.Respond(&msrap.RetrieveOK{Data: data, Size: size})
		}
	}
	for _, c := range []struct {
		name     string
		notified int64 // -1: no size in the notification
		answer   func(*msrap.Retrieve) hostile.Answer
		why      string // in the error
	}{
		{"claims-2^62", 1 << 62, endless(1 << 62), "over the limit of"},
		{"over-databytes-unnotified", -1, endless(1 << 40), "a size of 1099511627776 octets, over the limit of 4194304"},
		{"over-the-notified-size", 100, endless(200), "a size of 200 octets, over the limit of 100"},
		{"less-than-notified", 100, func(*msrap.Retrieve) hostile.Answer {
			return hostile.Respond(&msrap.RetrieveOK{Data: []byte("Subject: short\r\n"), Size: 16})
		}, "not the notification's 100"},
		{"more-than-said", -1, serve(func(uint64) ([]byte, uint64) { return append(good, "more"...), 40000 }),
			"40004 octets at offset 0 of 40000"},
		{"size-changes", -1, serve(func(off uint64) ([]byte, uint64) {
			if off == 0 {
				return good[:MinPage], 40000
			}
			return good[off:], 50000
		}), "a size of 50000 octets after 40000"},
		{"empty-page", 40000, serve(func(off uint64) ([]byte, uint64) {
			if off == 0 {
				return good[:MinPage], 40000
			}
			return nil, 40000
		}), "a page of 0 octets at offset 16384 of 40000"},
		{"short-page", 40000, serve(func(off uint64) ([]byte, uint64) { return good[off : off+1], 40000 }),
			"a page of 1 octets at offset 0 of 40000"},
		{"header-never-ends", 2 << 20, func(c *msrap.Retrieve) hostile.Answer {
			line := bytes.Repeat([]byte("X-Junk: y\r\n"), 64<<10/11)
			return hostile.Respond(&msrap.RetrieveOK{Data: line[:min(2<<20-int(c.Offset), len(line))], Size: 2 << 20})
		}, "an unreadable header"},
	} {
		t.Run(c.name, func(t *testing.T) {
			good := pagedStore("Subject: fine\r\n\r\nfine\r\n", 1000, new(int64), new(sync.Mutex))
			s := hostile.Start(t, msrap.Protocol, func() hostile.Handler {
				return func(cmd wire.Body) hostile.Answer {
					if r, ok := cmd.(*msrap.Retrieve); ok && r.ID[1] == 1 {
						return c.answer(r)
					}
					return good(cmd)
				}
			})
			b := testInbox(t)
			b.max = 4 << 20
			bad := b.add(t, s.Addr, 1, c.notified, 0)
			fine := b.add(t, s.Addr, 2, int64(len("Subject: fine\r\n\r\nfine\r\n")), 0)
			_, err := b.RetrieveTo(bad, msrap.All, io.Discard)
			if !errors.Is(err, ErrRefused) || !errors.Is(err, ErrDropped) || !strings.Contains(err.Error(), c.why) {
				t.Fatalf("err %v, want ErrRefused for %q", err, c.why)
			}
			if b.isPending(t, bad) {
				t.Error("the refused entry is still pending")
			}
			// A refusal is not a transport failure: the store keeps its chance.
			var out bytes.Buffer
			if _, err := b.RetrieveTo(fine, msrap.All, &out); err != nil || !strings.HasSuffix(out.String(), "fine\r\n") {
				t.Errorf("the other entry at that store: %v, %q", err, out.String())
			}
		})
	}
}

// TestOneChancePerStore: after a store's first failure (a tarpit that
// never answers), its other entries fail at once without contacting it.
func TestOneChancePerStore(t *testing.T) {
	s := hostile.Start(t, msrap.Protocol, func() hostile.Handler {
		return func(wire.Body) hostile.Answer { return hostile.Answer{Silent: true} }
	})
	b := testInbox(t)
	var es []agent.Entry
	for i := range 3 {
		es = append(es, b.add(t, s.Addr, byte(i), 10, 0))
	}
	start := time.Now()
	for i, e := range es {
		_, err := b.RetrieveTo(e, msrap.All, io.Discard)
		if err == nil || (i > 0) != errors.Is(err, ErrStoreFailed) {
			t.Errorf("entry %d: %v", i, err)
		}
		if i > 0 && !strings.Contains(err.Error(), "failed earlier in this run; kept for the next") {
			t.Errorf("entry %d: unclear error %v", i, err)
		}
	}
	if d := time.Since(start); d > 5*testTimeout/2 {
		t.Errorf("three entries at a tarpit took %v, timeout %v", d, testTimeout)
	}
	if n := s.Sessions(); n != 1 {
		t.Errorf("the tarpit saw %d sessions, want 1", n)
	}
	if err := b.Silence(es[0]); !errors.Is(err, ErrStoreFailed) {
		t.Errorf("silence after the failure: %v", err)
	}
	if len(b.mustPending(t)) != 3 {
		t.Error("entries at a failed store left the pending queue")
	}
}

// TestReopen: a session the store closed after an answer (as stores close
// idle sessions) is dialled again, once per store in a run, and the
// command goes through; the second time ends the store's chance. A
// session that times out is not tried again, nor one just dialled.
func TestReopen(t *testing.T) {
	const msg = "Subject: x\r\n\r\nx\r\n"
	closing := hostile.Start(t, msrap.Protocol, func() hostile.Handler {
		good := pagedStore(msg, 1000, new(int64), new(sync.Mutex))
		return func(cmd wire.Body) hostile.Answer {
			a := good(cmd)
			a.Close = true // answer, then hang up
			return a
		}
	})
	b := testInbox(t)
	e1, e2 := b.add(t, closing.Addr, 1, int64(len(msg)), 0), b.add(t, closing.Addr, 2, int64(len(msg)), 0)
	if _, err := b.RetrieveTo(e1, msrap.All, io.Discard); err != nil {
		t.Fatalf("retrieval: %v", err)
	}
	if err := b.Silence(e1); err != nil {
		t.Fatalf("silence over a reopened session: %v", err)
	}
	if _, err := b.RetrieveTo(e2, msrap.All, io.Discard); err == nil || errors.Is(err, ErrStoreFailed) {
		t.Fatalf("a second hang-up in the run: %v, want the failure", err)
	}
	if err := b.Silence(e2); !errors.Is(err, ErrStoreFailed) {
		t.Errorf("after the second hang-up: %v, want ErrStoreFailed", err)
	}
	if n := closing.Sessions(); n != 2 {
		t.Errorf("%d sessions, want 2 (one reopening a run)", n)
	}

	// A store that answers once, then never again: one timeout, no retry.
	silent := hostile.Start(t, msrap.Protocol, func() hostile.Handler {
		first := true
		good := pagedStore(msg, 1000, new(int64), new(sync.Mutex))
		return func(cmd wire.Body) hostile.Answer {
			if first {
				first = false
				return good(cmd)
			}
			return hostile.Answer{Silent: true}
		}
	})
	e3, e4 := b.add(t, silent.Addr, 3, int64(len(msg)), 0), b.add(t, silent.Addr, 4, int64(len(msg)), 0)
	if _, err := b.RetrieveTo(e3, msrap.All, io.Discard); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := b.RetrieveTo(e4, msrap.All, io.Discard); err == nil || errors.Is(err, ErrStoreFailed) {
		t.Fatalf("retrieval from a store gone silent: %v", err)
	}
	if d := time.Since(start); d > 3*testTimeout/2 || silent.Sessions() != 1 {
		t.Errorf("a timeout was retried: %v, %d sessions", d, silent.Sessions())
	}

	// A store that hangs up on a session just dialled, unanswered: not
	// dialled again, though this store's reopening is still unused.
	hangup := hostile.Start(t, msrap.Protocol, func() hostile.Handler {
		return func(wire.Body) hostile.Answer { return hostile.Answer{Close: true} }
	})
	e5 := b.add(t, hangup.Addr, 5, 10, 0)
	if _, err := b.RetrieveTo(e5, msrap.All, io.Discard); err == nil || errors.Is(err, ErrStoreFailed) {
		t.Fatalf("a fresh session closed: %v", err)
	}
	if n := hangup.Sessions(); n != 1 {
		t.Errorf("a freshly dialled session was retried: %d sessions", n)
	}
}

// TestExpired: an entry that fails when it is older than maxlifetime is
// dropped; a younger one at the same store is kept; an old one behind the
// store's failure (not tried in this run) is dropped all the same.
func TestExpired(t *testing.T) {
	s := hostile.Start(t, msrap.Protocol, func() hostile.Handler {
		return func(wire.Body) hostile.Answer { return hostile.Answer{Close: true} }
	})
	b := testInbox(t)
	old := b.add(t, s.Addr, 1, 10, 2*time.Hour)
	young := b.add(t, s.Addr, 2, 10, time.Minute)
	behind := b.add(t, s.Addr, 3, 10, 2*time.Hour)
	if _, err := b.RetrieveTo(old, msrap.All, io.Discard); !errors.Is(err, ErrExpired) || !errors.Is(err, ErrDropped) {
		t.Errorf("the old entry: %v, want ErrExpired", err)
	}
	if _, err := b.RetrieveTo(young, msrap.All, io.Discard); !errors.Is(err, ErrStoreFailed) || errors.Is(err, ErrDropped) {
		t.Errorf("the young entry: %v, want a failure kept for later", err)
	}
	if _, err := b.RetrieveTo(behind, msrap.All, io.Discard); !errors.Is(err, ErrExpired) || !errors.Is(err, ErrStoreFailed) {
		t.Errorf("the old entry behind the failure: %v, want ErrExpired", err)
	}
	if b.isPending(t, old) || b.isPending(t, behind) || !b.isPending(t, young) {
		t.Errorf("pending: old %v, behind %v, young %v; want only the young one", b.isPending(t, old), b.isPending(t, behind), b.isPending(t, young))
	}
	if n := s.Sessions(); n != 1 {
		t.Errorf("%d sessions, want 1 (one chance)", n)
	}
}
