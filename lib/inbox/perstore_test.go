package inbox

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"im2000/lib/agent"
	"im2000/lib/fail"
	"im2000/lib/msgid"
	"im2000/lib/wire"
	"im2000/lib/wire/msrap"
	"im2000/lib/wire/rnaqp"
	"im2000/lib/wire/rnasp"
	"im2000/tests/hostile"
)

// perStoreEntries is n entries at stores 192.0.2.1:1000 up, k entries a
// store, without senders (grouped by location).
func perStoreEntries(stores, k int) []agent.Entry {
	var es []agent.Entry
	for i := range stores * k {
		n := rnaqp.NotificationAndLocalData{Notification: rnasp.Notification{
			StoreClear: wire.ServiceLocation{Literals: []wire.AddrPort{netip.AddrPortFrom(netip.MustParseAddr("192.0.2.1"), uint16(1000+i%stores))}},
			ID:         msgid.ID{byte(i)}}}
		es = append(es, agent.Entry{N: n})
	}
	return es
}

// TestPerStore: one store's entries in order, one at a time; different
// stores at once, never more than MaxStoresAtOnce of them (20 stores).
func TestPerStore(t *testing.T) {
	for _, stores := range []int{4, 20} {
		es := perStoreEntries(stores, 3)
		var mu sync.Mutex
		seen := map[uint16][]int{}
		running, most := 0, 0
		notDone := PerStore(es, func(i int, e agent.Entry) {
			mu.Lock()
			running++
			most = max(most, running)
			port := e.N.Notification.StoreClear.Literals[0].Port()
			seen[port] = append(seen[port], i)
			mu.Unlock()
			time.Sleep(50 * time.Millisecond)
			mu.Lock()
			running--
			mu.Unlock()
		})
		for port, idx := range seen {
			for k := 1; k < len(idx); k++ {
				if idx[k] < idx[k-1] {
					t.Errorf("store %d's entries out of order: %v", port, idx)
				}
			}
			if len(idx) != 3 {
				t.Errorf("store %d: %v", port, idx)
			}
		}
		if len(seen) != stores || len(notDone) != 0 {
			t.Errorf("%d stores seen of %d, not done %v", len(seen), stores, notDone)
		}
		if want := min(stores, MaxStoresAtOnce); most != want {
			t.Errorf("%d entries at once for %d stores, want %d", most, stores, want)
		}
	}
}

// TestPerStorePanic: a panic in one store's call is an alert with its
// stack, that store's failure (the rest of its entries not called, and
// all of them returned as not done); the other stores go on; nothing
// reaches the caller.
func TestPerStorePanic(t *testing.T) {
	var log bytes.Buffer
	fail.Stderr = &log
	defer func() { fail.Stderr = os.Stderr }()
	es := perStoreEntries(4, 3) // store i%4: entry 5 is store 1's second
	var mu sync.Mutex
	called := map[int]bool{}
	notDone := PerStore(es, func(i int, e agent.Entry) {
		mu.Lock()
		called[i] = true
		mu.Unlock()
		if i == 5 {
			var m map[string]int
			m["boom"]++ // a real runtime panic
		}
	})
	if fmt.Sprint(notDone) != "[5 9]" {
		t.Errorf("not done %v, want [5 9] (the panicking entry and the rest of its store's)", notDone)
	}
	if called[9] || len(called) != 11 {
		t.Errorf("called %v: want all but entry 9", called)
	}
	if l := log.String(); !strings.Contains(l, "alert: panic in the retrieval of") || !strings.Contains(l, "perstore_test.go:") {
		t.Errorf("log %q: want an alert with the stack", l)
	}
}

// TestPerStoreGroups: entries are grouped by their location's canonical
// form, so one store however spelled is worked one entry at a time.
func TestPerStoreGroups(t *testing.T) {
	a := netip.MustParseAddrPort("192.0.2.1:1000")
	mapped := netip.AddrPortFrom(netip.AddrFrom16(a.Addr().As16()), a.Port())
	var es []agent.Entry
	for _, l := range []wire.ServiceLocation{
		{Literals: []wire.AddrPort{a}}, {Literals: []wire.AddrPort{a, a}}, {Literals: []wire.AddrPort{mapped}},
		{Domain: wire.DomainName{"Example", "ORG"}}, {Domain: wire.DomainName{"example", "org"}},
	} {
		es = append(es, agent.Entry{N: rnaqp.NotificationAndLocalData{Notification: rnasp.Notification{StoreClear: l}}})
	}
	var mu sync.Mutex
	running, most := map[string]int{}, 0
	PerStore(es, func(i int, e agent.Entry) {
		k := groupKey(e)
		mu.Lock()
		running[k]++
		most = max(most, running[k])
		mu.Unlock()
		time.Sleep(30 * time.Millisecond)
		mu.Lock()
		running[k]--
		mu.Unlock()
	})
	if most != 1 || len(running) != 2 {
		t.Errorf("%d entries of one store at once, want 1; groups %v, want 2", most, running)
	}
}

// TestConcurrentStores: retrievals from several stores at once (as fetch
// runs them; race-clean under go test -race) each get their own
// message, and a silent store holds up only its own entries.
func TestConcurrentStores(t *testing.T) {
	b := testInbox(t)
	var es []agent.Entry
	want := map[string]string{}
	for i := range 3 {
		msg := fmt.Sprintf("Subject: %d\r\n\r\nbody of store %d\r\n", i, i)
		msg += strings.Repeat("more of it\r\n", 3000) // three pages of MinPage
		s := hostile.Start(t, msrap.Protocol, func() hostile.Handler { return pagedStore(msg, MinPage, new(int64), new(sync.Mutex)) })
		for k := range 2 {
			e := b.add(t, s.Addr, byte(10*i+k), int64(len(msg)), 0)
			es, want[e.Name] = append(es, e), msg
		}
	}
	silent := hostile.Start(t, msrap.Protocol, func() hostile.Handler {
		return func(wire.Body) hostile.Answer { return hostile.Answer{Silent: true} }
	})
	es = append(es, b.add(t, silent.Addr, 99, 10, 0))
	var mu sync.Mutex
	got := map[string]string{}
	start := time.Now()
	PerStore(es, func(_ int, e agent.Entry) {
		var out bytes.Buffer
		if _, err := b.RetrieveTo(e, msrap.All, &out); err != nil {
			return
		}
		if err := b.Silence(e); err == nil {
			b.Done(e)
		}
		mu.Lock()
		got[e.Name] = out.String()
		mu.Unlock()
	})
	if d := time.Since(start); d > 3*testTimeout/2 {
		t.Errorf("took %v", d)
	}
	for name, msg := range want {
		if !strings.HasSuffix(got[name], "\r\n\r\n"+strings.SplitN(msg, "\r\n\r\n", 2)[1]) {
			t.Errorf("%s: got %q, want the body of %q", name, got[name], msg)
		}
	}
	if l := b.mustPending(t); len(l) != 1 {
		t.Errorf("%d entries pending, want the silent store's one", len(l))
	}
}
