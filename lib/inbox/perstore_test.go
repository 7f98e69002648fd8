package inbox

import (
	"bytes"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"im2000/lib/agent"
	"im2000/lib/msgid"
	"im2000/lib/wire"
	"im2000/lib/wire/msrap"
	"im2000/lib/wire/rnaqp"
	"im2000/lib/wire/rnasp"
	"im2000/tests/hostile"
)

// TestPerStore: one store's entries in order, one at a time; different
// stores at once; a panic reaches the caller.
func TestPerStore(t *testing.T) {
	var es []agent.Entry
	for i := range 12 {
		n := rnaqp.NotificationAndLocalData{Notification: rnasp.Notification{
			StoreClear: wire.ServiceLocation{Literals: []wire.AddrPort{netip.AddrPortFrom(netip.MustParseAddr("192.0.2.1"), uint16(1000+i%4))}},
			ID:         msgid.ID{byte(i)}}}
		es = append(es, agent.Entry{N: n})
	}
	var mu sync.Mutex
	seen := map[uint16][]int{}
	running, most := 0, 0
	PerStore(es, func(i int, e agent.Entry) {
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
	if most != 4 {
		t.Errorf("%d entries at once for 4 stores, want 4", most)
	}
	defer func() {
		if v := recover(); v != "boom" {
			t.Errorf("recovered %v, want the panic", v)
		}
	}()
	PerStore(es, func(i int, e agent.Entry) {
		if i == 5 {
			panic("boom")
		}
	})
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
		s := hostile.Start(t, msrap.Protocol, func() hostile.Handler { return pagedStore(msg, 7, new(int64), new(sync.Mutex)) })
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
