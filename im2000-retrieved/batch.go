package main

import (
	"fmt"
	"sync"

	"im2000/lib/msgid"
	"im2000/lib/store"
)

// Status changes to one message from sessions at the same time (a message
// to 10,000 recipients silenced by many fetchers at once) are written
// together: one journal append and one fsync for all the changes that came
// in while the previous write was under way (group commit). An fsync
// writes at least a whole page whatever it carries, so one per silence
// made the store write ~3.7 kB per recipient; a group of k costs 1/k of
// that each. Nobody waits for a timer: the first change to arrive is
// written at once by its own session (the leader), and whatever arrives
// meanwhile is the next group, led by its first arrival. Every session
// still answers only once its change is durable (Message.Update returns
// after the fsync). Only sessions in one process are grouped: under
// tcpserver each session is its own process and writes alone.

// batches holds the groups forming, one per message.
type batches struct {
	mu     sync.Mutex
	groups map[batchKey]*group
}

type batchKey struct {
	account string
	id      msgid.ID
}

// group is the changes waiting for a message; busy while a leader writes.
type group struct {
	busy    bool
	pending []*change
}

// change is one session's change to recipient i, and where its outcome
// goes: nil or an error, or errLead when the session is to write the group
// itself.
type change struct {
	i    int
	fn   func(*store.RecipientStatus)
	done chan error
}

// maxGroup bounds one write: a group's records go in one write(2), and
// one slow update holds back no more sessions than this.
const maxGroup = 1024

// update applies fn to recipient i of the open message m, together with
// whatever other sessions change in it at the same time.
func (b *batches) update(m *store.Message, i int, fn func(*store.RecipientStatus)) error {
	k := batchKey{m.Account, m.Env.ID}
	c := &change{i: i, fn: fn, done: make(chan error, 1)}
	b.mu.Lock()
	g := b.groups[k]
	if g == nil {
		g = &group{}
		b.groups[k] = g
	}
	g.pending = append(g.pending, c)
	lead := !g.busy
	g.busy = true
	b.mu.Unlock()
	if !lead {
		if err := <-c.done; err != errLead {
			return err
		}
	}
	// This session writes the group: its own change and every change
	// queued before it took the lead, through its own open message (the
	// same file as the others').
	b.mu.Lock()
	n := min(len(g.pending), maxGroup)
	mine := g.pending[:n:n]
	g.pending = g.pending[n:]
	b.mu.Unlock()
	err := func() (err error) {
		// A panic must not leave the group busy with nobody writing it.
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("panic updating %s/%s: %v", m.Account, m.Env.ID, p)
			}
		}()
		return m.Update(func(_ *store.Envelope, st *store.Status) error {
			for _, c := range mine {
				c.fn(&st.Recipients[c.i])
			}
			return nil
		})
	}()
	b.mu.Lock()
	if len(g.pending) > 0 {
		g.pending[0].done <- errLead // the next group's leader
	} else {
		g.busy = false
		delete(b.groups, k)
	}
	b.mu.Unlock()
	var own error
	for _, x := range mine {
		if x == c {
			own = err
		} else {
			x.done <- err
		}
	}
	return own
}

// errLead tells a waiting session to write its group itself.
var errLead = leadError{}

type leadError struct{}

func (leadError) Error() string { return "lead" }
