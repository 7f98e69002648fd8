package main

import (
	"container/heap"
	"strings"

	"im2000/lib/msgid"
	"im2000/lib/store"
)

// The schedule is notifyd's in-memory queue, in the manner of Postfix's
// queue manager: every recipient still to be notified is an entry, filed
// under its destination domain and ordered by when it is due. A commit
// adds entries without looking at what is queued; a worker takes the due
// entries of one idle destination and gives them back with their next due
// time. The sidecars stay the one truth: the schedule is rebuilt from them
// at start and checked against them before each send.
//
// Memory: a message costs one message (about 100 octets with its sender)
// and each recipient one entry (about 80 octets with its local part and its
// slot in the heap). A million waiting recipients take well under 512 MiB;
// BENCHMARKS.md has the measured figure.
//
// Only the scheduler goroutine touches a schedule; workers get the entries
// of a batch and hand them back through a channel.

// message is what a batch needs of a queued message, read once when it
// enters the schedule.
type message struct {
	acct    *store.Account
	id      msgid.ID
	sender  string
	size    uint64
	expires int64 // unix seconds
	entries int   // in the schedule, for forgetting the message
}

// entry is one recipient of one message.
type entry struct {
	msg   *message
	rid   msgid.ID
	local string // the recipient's local part; the domain is the destination's
	index int32  // in the envelope and the sidecar
	state store.Notification
	due   int64 // unix nanoseconds
}

// destination is one recipient domain: the unit of sessions, batches and
// concurrency.
type destination struct {
	domain string
	q      entryHeap
	busy   bool // a worker has a batch of it
	pos    int  // in schedule.idle, or -1
}

type schedule struct {
	dests    map[string]*destination
	idle     destHeap // destinations with entries and no worker, by first due
	messages map[msgid.ID]*message
	entries  int
}

func newSchedule() *schedule {
	return &schedule{dests: map[string]*destination{}, messages: map[msgid.ID]*message{}}
}

// has reports whether the message is in the schedule already.
func (s *schedule) has(id msgid.ID) bool { return s.messages[id] != nil }

// add files a message's entries under their domains.
func (s *schedule) add(m *message, domains []string, es []*entry) {
	if len(es) == 0 || s.has(m.id) {
		return
	}
	s.messages[m.id] = m
	for i, e := range es {
		e.msg = m
		m.entries++
		s.entries++
		d := s.dest(domains[i])
		heap.Push(&d.q, e)
		s.fix(d)
	}
}

// dest finds or makes a domain's destination.
func (s *schedule) dest(domain string) *destination {
	domain = strings.ToLower(domain)
	d := s.dests[domain]
	if d == nil {
		d = &destination{domain: domain, pos: -1}
		s.dests[domain] = d
	}
	return d
}

// fix puts an idle destination where its first entry says in the idle
// heap, or takes it out when it is busy or empty.
func (s *schedule) fix(d *destination) {
	want := !d.busy && len(d.q) > 0
	switch {
	case want && d.pos < 0:
		heap.Push(&s.idle, d)
	case want:
		heap.Fix(&s.idle, d.pos)
	case d.pos >= 0:
		heap.Remove(&s.idle, d.pos)
	}
	if !d.busy && len(d.q) == 0 {
		delete(s.dests, d.domain)
	}
}

// next is when the earliest entry of an idle destination is due.
func (s *schedule) next() (int64, bool) {
	if len(s.idle) == 0 {
		return 0, false
	}
	return s.idle[0].q[0].due, true
}

// take gives the idle destination whose first entry is most overdue, with
// up to max of its entries due by now, and marks it busy. It returns nil
// when no destination has an entry due.
func (s *schedule) take(now int64, max int) (*destination, []*entry) {
	if len(s.idle) == 0 || s.idle[0].q[0].due > now {
		return nil, nil
	}
	d := s.idle[0]
	var batch []*entry
	for len(d.q) > 0 && d.q[0].due <= now && len(batch) < max {
		batch = append(batch, heap.Pop(&d.q).(*entry))
	}
	d.busy = true
	s.fix(d)
	return d, batch
}

// done ends a worker's batch: kept entries go back with their new due
// time, the others leave the schedule, and so does a message that has no
// entries left.
func (s *schedule) done(d *destination, kept, dropped []*entry) {
	for _, e := range kept {
		heap.Push(&d.q, e)
	}
	for _, e := range dropped {
		s.entries--
		if e.msg.entries--; e.msg.entries == 0 {
			delete(s.messages, e.msg.id)
		}
	}
	d.busy = false
	s.fix(d)
}

// expedite makes every deferred entry due at now: those whose last
// attempt failed for a temporary reason, or that were never tried. Entries
// already accepted by their agent (notifying) keep their resend time.
func (s *schedule) expedite(now int64) int {
	n := 0
	for _, d := range s.dests {
		for _, e := range d.q {
			if e.state != store.Notifying && e.due > now {
				e.due = now
				n++
			}
		}
		heap.Init(&d.q)
		s.fix(d)
	}
	return n
}

type entryHeap []*entry

func (h entryHeap) Len() int           { return len(h) }
func (h entryHeap) Less(i, j int) bool { return h[i].due < h[j].due }
func (h entryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *entryHeap) Push(x any)        { *h = append(*h, x.(*entry)) }
func (h *entryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return e
}

type destHeap []*destination

func (h destHeap) Len() int           { return len(h) }
func (h destHeap) Less(i, j int) bool { return h[i].q[0].due < h[j].q[0].due }
func (h destHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].pos, h[j].pos = i, j
}
func (h *destHeap) Push(x any) {
	d := x.(*destination)
	d.pos = len(*h)
	*h = append(*h, d)
}
func (h *destHeap) Pop() any {
	old := *h
	d := old[len(old)-1]
	old[len(old)-1] = nil
	d.pos = -1
	*h = old[:len(old)-1]
	return d
}
