package main

import (
	"container/heap"

	"im2000/lib/msgid"
)

// A sender's resend (im2000-status --resend, store.Account.Resend) journals
// "next attempt now" for the message's open recipients and puts its link
// back in todo/, so the intake loads it again although the schedule has it
// already. sooner gives the scheduled entries the loaded due times where
// they are earlier: nothing else about them changes, and an entry whose
// batch is out (not in any heap) keeps its course; the recorder files it
// again as usual. O(entries in the schedule), once per resend.
func (s *schedule) sooner(id msgid.ID, es []*entry) {
	want := make(map[int32]int64, len(es))
	for _, e := range es {
		want[e.index] = e.due
	}
	for _, d := range s.dests {
		changed := false
		for _, e := range d.q {
			if due, ok := want[e.index]; ok && e.msg.id == id && due < e.due {
				e.due = due
				changed = true
			}
		}
		if changed {
			heap.Init(&d.q)
			s.fix(d)
		}
	}
}
