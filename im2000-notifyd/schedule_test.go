package main

import (
	"testing"
	"time"

	"im2000/lib/msgid"
	"im2000/lib/store"
)

func newMsg(t *testing.T) *message {
	return &message{id: msgid.New()}
}

var (
	all     = [classes]bool{true, true, true}
	notSlow = [classes]bool{true, true, false}
)

// finish ends a batch as the scheduler does with what the worker and the
// recorder report.
func finish(s *schedule, d *destination, kept, dropped []*entry) {
	s.done(d, true, false)
	s.back(d.domain, kept)
	s.drop(dropped)
}

// ents makes one entry per due time.
func ents(due ...int64) []*entry {
	var es []*entry
	for i, d := range due {
		es = append(es, &entry{index: int32(i), due: d})
	}
	return es
}

func TestScheduleTakesMostOverdueDestinationFirst(t *testing.T) {
	s := newSchedule()
	s.add(newMsg(t), []string{"a.example", "a.example", "B.example"}, ents(30, 10, 20))
	if due, ok := s.next(all); !ok || due != 10 {
		t.Fatalf("next = %d %v, want 10", due, ok)
	}
	if d, b := s.take(25, 10, all); d.domain != "a.example" || len(b) != 1 {
		t.Fatalf("took %s with %d entries, want a.example with 1", d.domain, len(b))
	}
	if due, ok := s.next(all); !ok || due != 20 {
		t.Fatalf("next = %d %v, want 20 (a is busy)", due, ok)
	}
}

func TestScheduleOrder(t *testing.T) {
	s := newSchedule()
	m := newMsg(t)
	s.add(m, []string{"a.example", "a.example", "B.example", "c.example"}, ents(30, 15, 20, 100))
	if due, _ := s.next(all); due != 15 {
		t.Fatalf("next = %d, want 15", due)
	}
	if d, b := s.take(5, 10, all); d != nil {
		t.Fatalf("took %s with %d entries before anything was due", d.domain, len(b))
	}
	// At 25, a (first due 15) goes before b (20); a gives only its due entry.
	d, batch := s.take(25, 10, all)
	if d == nil || d.domain != "a.example" || len(batch) != 1 || batch[0].due != 15 {
		t.Fatalf("first take: %v %v", d, batch)
	}
	// a is busy: its other entry (30) is not offered even when due.
	d2, batch2 := s.take(50, 10, all)
	if d2 == nil || d2.domain != "b.example" || len(batch2) != 1 {
		t.Fatalf("second take: %v %v", d2, batch2)
	}
	if d3, _ := s.take(50, 10, all); d3 != nil {
		t.Fatalf("took busy or not-due %s", d3.domain)
	}
	// a's batch comes back with a later due; its waiting entry is now first.
	batch[0].due = 200
	finish(s, d, batch, nil)
	d4, batch4 := s.take(50, 10, all)
	if d4 != d || len(batch4) != 1 || batch4[0].due != 30 {
		t.Fatalf("after done: %v %v", d4, batch4)
	}
	// b's entry leaves the schedule; b's destination is forgotten.
	finish(s, d2, nil, batch2)
	if s.dests["b.example"] != nil {
		t.Error("empty idle destination kept")
	}
	if s.entries != 3 || !s.has(m.id) {
		t.Fatalf("entries %d, has %v", s.entries, s.has(m.id))
	}
	finish(s, d4, nil, batch4)
	d5, b5 := s.take(1000, 10, all)
	finish(s, d5, nil, b5)
	d6, b6 := s.take(1000, 10, all)
	finish(s, d6, nil, b6)
	if s.entries != 0 || s.has(m.id) || len(s.dests) != 0 || len(s.idle[proven])+len(s.idle[untried])+len(s.idle[slow]) != 0 {
		t.Fatalf("not empty at the end: %d entries, %d dests, %d idle, has %v", s.entries, len(s.dests), len(s.idle), s.has(m.id))
	}
}

func TestScheduleBatchLimit(t *testing.T) {
	s := newSchedule()
	var domains []string
	var due []int64
	for i := 0; i < 2500; i++ {
		domains = append(domains, "x.example")
		due = append(due, int64(i))
	}
	s.add(newMsg(t), domains, ents(due...))
	d, b := s.take(1<<40, batchMax, all)
	if len(b) != batchMax {
		t.Fatalf("batch of %d", len(b))
	}
	for i, e := range b {
		if e.due != int64(i) {
			t.Fatalf("batch out of order at %d: %d", i, e.due)
		}
	}
	finish(s, d, nil, b)
	_, b = s.take(1<<40, batchMax, all)
	if len(b) != batchMax || b[0].due != 1000 {
		t.Fatalf("second batch: %d from %d", len(b), b[0].due)
	}
}

func TestScheduleAddsAMessageOnce(t *testing.T) {
	s := newSchedule()
	m := newMsg(t)
	s.add(m, []string{"a.example"}, ents(1))
	s.add(m, []string{"a.example"}, ents(1))
	if s.entries != 1 {
		t.Fatalf("%d entries", s.entries)
	}
}

func TestExpedite(t *testing.T) {
	s := newSchedule()
	es := ents(100, 100, 100)
	es[0].state = store.NoServer
	es[1].state = store.Notifying
	es[2].state = store.Unprocessed
	s.add(newMsg(t), []string{"a.example", "a.example", "a.example"}, es)
	if n := s.expedite(5); n != 2 {
		t.Fatalf("expedited %d, want 2", n)
	}
	_, b := s.take(5, 10, all)
	if len(b) != 2 {
		t.Fatalf("due after SIGALRM: %d", len(b))
	}
	for _, e := range b {
		if e.state == store.Notifying {
			t.Error("a notified recipient was expedited")
		}
	}
}

func TestBackoff(t *testing.T) {
	c := &config{retryBase: time.Minute, retryMax: time.Hour}
	for attempts, want := range map[int64]time.Duration{1: time.Minute, 2: 2 * time.Minute, 3: 4 * time.Minute, 7: time.Hour, 100: time.Hour} {
		for i := 0; i < 50; i++ {
			got := c.backoff(attempts)
			if got < want/2 || got > want*3/2 {
				t.Fatalf("backoff(%d) = %v, want %v ±50%%", attempts, got, want)
			}
		}
	}
}

// TestSlowDestinations: destinations whose last attempt found no server
// get only the workers the caller allows them; the others, and new ones,
// go first even when a slow one is due earlier.
func TestSlowDestinations(t *testing.T) {
	s := newSchedule()
	s.add(newMsg(t), []string{"tarpit.example", "tarpit.example", "ok.example"}, ents(1, 2, 5))
	d, b := s.take(10, 1, all)
	if d.domain != "tarpit.example" {
		t.Fatalf("took %s", d.domain)
	}
	s.done(d, true, true) // no server answered
	s.back(d.domain, b)
	d2, _ := s.take(10, 10, notSlow)
	if d2 == nil || d2.domain != "ok.example" {
		t.Fatalf("without room for slow ones took %v", d2)
	}
	if d3, _ := s.take(10, 10, notSlow); d3 != nil {
		t.Fatalf("took slow %s without room for it", d3.domain)
	}
	if due, ok := s.next(notSlow); ok {
		t.Fatalf("next without slow ones: %d", due)
	}
	if d4, _ := s.take(10, 10, all); d4 == nil || d4.domain != "tarpit.example" || d4.class != slow {
		t.Fatalf("with room took %v", d4)
	}
}

// TestWorkers: untried destinations may have half the fast workers, slow
// ones half as many again of their own, and a batch out too long turns
// late: it frees its class's place, and sessions stay bounded.
func TestWorkers(t *testing.T) {
	var w workers
	now := time.Now()
	dests := []*destination{{class: untried}, {class: untried}, {class: untried}, {class: proven}}
	w.start(dests[0], now)
	w.start(dests[1], now)
	if a := w.allow(4); a[untried] || !a[proven] || !a[slow] {
		t.Fatalf("two untried out of four: %v", a)
	}
	w.start(dests[3], now)
	if next := w.reclassify(now.Add(time.Second), 2*time.Second); !next.Equal(now.Add(2 * time.Second)) {
		t.Fatalf("next reclassification at %v", next)
	}
	w.reclassify(now.Add(3*time.Second), 2*time.Second)
	if len(w.late) != 3 || w.out[proven]+w.out[untried]+w.out[slow] != 0 {
		t.Fatalf("after the timeout: %v, %d late", w.out, len(w.late))
	}
	// Late batches hold no place among the slow ones; untried may start
	// while fast and late stay under concurrency, proven under one and a
	// half times it.
	if a := w.allow(4); !a[untried] || !a[proven] || !a[slow] {
		t.Fatalf("three late out of four: %v", a)
	}
	w.start(&destination{class: untried}, now)
	if a := w.allow(4); a[untried] || !a[proven] {
		t.Fatalf("three late and one untried: %v", a)
	}
	w.start(&destination{class: proven}, now)
	w.start(&destination{class: proven}, now)
	if a := w.allow(4); a[proven] {
		t.Fatalf("six out, ceiling of concurrency and a half: %v", a)
	}
	for _, d := range dests[:2] {
		if !w.end(d) {
			t.Errorf("a late batch ended as not late")
		}
	}
	w.end(dests[3])
	if len(w.late) != 0 || w.busy() != 3 {
		t.Fatalf("after the late ones: %v %v", w.out, w.late)
	}
}
