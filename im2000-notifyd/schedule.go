package main

import (
	"container/heap"
	"strings"
	"sync/atomic"

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
	expires int64        // unix seconds
	entries int          // in the schedule, for forgetting the message
	trouble atomic.Int32 // sidecar reads or writes failed in a row, for backoff
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

// class is what notifyd knows of a destination's agent, which decides
// how many workers such destinations may have at once (see workers in
// main.go): proven ones answered their last attempt; untried ones have not
// been tried (lately); slow ones found no agent, or kept a batch out
// without an answer (dead, or a tarpit that holds each session for the
// whole timeout). So a crowd of new or dead destinations never holds up
// the destinations that answer.
type class uint8

const (
	proven class = iota
	untried
	slow
	classes
)

var classNames = [classes]string{"proven", "untried", "slow"}

func (c class) String() string { return classNames[c] }

// destination is one recipient domain: the unit of sessions, batches and
// concurrency.
type destination struct {
	domain string
	q      entryHeap
	busy   bool // a worker has a batch of it
	class  class
	pos    int // in its class's idle heap, or -1
}

// maxRemembered bounds the classes remembered of destinations with nothing
// queued.
const maxRemembered = 100000

type schedule struct {
	dests    map[string]*destination
	idle     [classes]destHeap // destinations with entries and no worker, by first due
	seen     map[string]class  // the class of destinations with nothing queued now
	messages map[msgid.ID]*message
	entries  int
}

func newSchedule() *schedule {
	return &schedule{dests: map[string]*destination{}, seen: map[string]class{}, messages: map[msgid.ID]*message{}}
}

// has reports whether the message is in the schedule already.
func (s *schedule) has(id msgid.ID) bool { return s.messages[id] != nil }

// add files a message's entries under their domains.
func (s *schedule) add(m *message, domains []string, es []*entry) {
	if len(es) == 0 {
		return
	}
	if s.has(m.id) {
		s.sooner(m.id, es) // a resend (resend.go)
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
		d = &destination{domain: domain, pos: -1, class: untried}
		if c, ok := s.seen[domain]; ok {
			d.class = c
			delete(s.seen, domain)
		}
		s.dests[domain] = d
	}
	return d
}

// fix puts an idle destination where its first entry says in its class's
// idle heap, or takes it out when it is busy or empty. A destination
// changes class only while busy, out of every heap. One with nothing left
// is forgotten but for its class.
func (s *schedule) fix(d *destination) {
	h := &s.idle[d.class]
	want := !d.busy && len(d.q) > 0
	switch {
	case want && d.pos < 0:
		heap.Push(h, d)
	case want:
		heap.Fix(h, d.pos)
	case d.pos >= 0:
		heap.Remove(h, d.pos)
	}
	if !d.busy && len(d.q) == 0 {
		delete(s.dests, d.domain)
		if len(s.seen) >= maxRemembered {
			clear(s.seen)
		}
		s.seen[d.domain] = d.class
	}
}

// first is the idle destination due first among the classes allowed.
func (s *schedule) first(allow [classes]bool) *destination {
	var d *destination
	for c := range classes {
		if allow[c] && len(s.idle[c]) > 0 && (d == nil || s.idle[c][0].q[0].due < d.q[0].due) {
			d = s.idle[c][0]
		}
	}
	return d
}

// next is when the earliest entry of an idle destination of the classes
// allowed is due.
func (s *schedule) next(allow [classes]bool) (int64, bool) {
	d := s.first(allow)
	if d == nil {
		return 0, false
	}
	return d.q[0].due, true
}

// take gives the idle destination (of the classes allowed) whose first
// entry is most overdue, with up to max of its entries due by now, and
// marks it busy. It returns nil when no such destination has an entry due.
func (s *schedule) take(now int64, max int, allow [classes]bool) (*destination, []*entry) {
	d := s.first(allow)
	if d == nil || d.q[0].due > now {
		return nil, nil
	}
	var batch []*entry
	for len(d.q) > 0 && d.q[0].due <= now && len(batch) < max {
		batch = append(batch, heap.Pop(&d.q).(*entry))
	}
	d.busy = true
	s.fix(d)
	return d, batch
}

// done ends a worker's batch: the destination is idle again, slow if no
// agent answered in time, proven if one did, as it was if nothing was
// sent. The batch's entries come back through back and drop.
func (s *schedule) done(d *destination, sent, noAgent bool) {
	d.busy = false
	switch {
	case noAgent:
		d.class = slow
	case sent:
		d.class = proven
	}
	s.fix(d)
}

// back files entries again under their domain, with their new due time.
func (s *schedule) back(domain string, es []*entry) {
	if len(es) == 0 {
		return
	}
	d := s.dest(domain)
	for _, e := range es {
		heap.Push(&d.q, e)
	}
	s.fix(d)
}

// drop forgets entries that are done with, and a message with none left.
func (s *schedule) drop(es []*entry) {
	for _, e := range es {
		s.entries--
		if e.msg.entries--; e.msg.entries == 0 {
			delete(s.messages, e.msg.id)
		}
	}
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
