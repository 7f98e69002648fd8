package main

// The mailbox's messages come from lib/inbox, the reader shared with
// im2000-fetch and im2000-pop3d: the user's notifications taken from the
// agent (RNAQP) into an fsynced pending queue under imapstate/USER, the
// sender binding checked before any store is contacted, the sender policy
// applied (policy.go), and each retrieval bounded. A message leaves the
// pending queue only once its store took the silence (update.go).

import (
	"errors"
	"io"
	"time"

	"github.com/emersion/go-imap/v2"

	"im2000/lib/agent"
	"im2000/lib/fail"
	"im2000/lib/inbox"
)

// mailbox is what a session needs of the user's lib/inbox.Inbox.
type mailbox interface {
	Pending() ([]agent.Entry, error)
	Size(e agent.Entry) (uint64, error)
	RetrieveTo(e agent.Entry, kind uint64, w io.Writer) (int64, error)
	Silence(e agent.Entry) error
	Done(e agent.Entry)
	SetDeadline(t time.Time)
	Close()
}

// checkPassword asks the agent whether pass is user's password
// (lib/inbox.CheckPassword).
func (c *config) checkPassword(user, pass string) error {
	return inbox.CheckPassword(c.conf, c.rna, user, pass)
}

// openInbox opens the user's pending queue.
func (c *config) openInbox(dir, user, pass string) (mailbox, error) {
	return inbox.Open(c.conf, dir)
}

// takeNew moves the user's new notifications from the agent into the
// pending queue (the agent checks the password again).
func (c *config) takeNew(mb mailbox, user, pass string) error {
	ib, ok := mb.(*inbox.Inbox)
	if !ok {
		return nil
	}
	_, err := ib.Take(c.rna, user, pass)
	return err
}

// refresh brings the state up to the pending queue. The agent (with
// take) and the senders' stores are asked outside the user's lock: a
// store that never answers delays this session's refresh only, never
// the user's other sessions, which wait for the lock on every change.
// Under the lock (first update): entries gone from the queue leave the
// state; new entries are screened (the sender binding, the sender
// policy), and those whose notification states a size get the next UIDs
// at once. Those without a size are asked of their stores (one session
// per store) with the lock released, and get their UIDs in a second short
// update, if still pending and not listed by another session meanwhile.
// An entry whose size cannot be had now stays pending without a UID, for
// a later refresh.
func (s *imapSession) refresh(take bool) error {
	if take {
		s.lastTake = time.Now()
		if err := s.take(s.mb, s.user, s.pass); err != nil {
			if errors.Is(err, inbox.ErrAuth) {
				return err
			}
			// The agent is down: what is pending is still there to read.
			logNotTaken(s.peer, s.user, err)
		}
	}
	var sizeless []agent.Entry
	_, _, err := lockedUpdate(s.dir, func(state *mboxState) (bool, error) {
		fresh, changed, err := s.prune(state)
		if err != nil {
			return false, err
		}
		if fresh, err = s.screen(fresh); err != nil {
			return false, err
		}
		for _, e := range fresh {
			if e.N.Notification.Size == nil {
				sizeless = append(sizeless, e)
				continue
			}
			state.add(e, int64(min(*e.N.Notification.Size, 1<<62)))
			changed = true
		}
		return changed, nil
	})
	if err != nil || len(sizeless) == 0 {
		return err
	}
	sizes := make([]int64, len(sizeless))
	inbox.PerStore(sizeless, func(i int, e agent.Entry) {
		size, err := s.mb.Size(e)
		switch {
		case errors.Is(err, inbox.ErrGone):
			s.mb.Done(e)
			sizes[i] = -1
		case err != nil: // logged by lib/inbox when dropped
			if !errors.Is(err, inbox.ErrDropped) {
				logNoSize(s.peer, s.user, e.N.Notification.ID.String(), err)
			}
			sizes[i] = -1
		default:
			sizes[i] = int64(min(size, 1<<62))
		}
	})
	_, _, err = lockedUpdate(s.dir, func(state *mboxState) (bool, error) {
		_, changed, err := s.prune(state)
		if err != nil {
			return false, err
		}
		known := state.names()
		for i, e := range sizeless {
			if sizes[i] < 0 || known[e.Name] {
				continue
			}
			if _, ok := s.entries[e.Name]; !ok {
				continue // gone from the queue meanwhile
			}
			state.add(e, sizes[i])
			changed = true
		}
		return changed, nil
	})
	return err
}

// prune lists the pending queue into s.entries, drops the records whose
// entries left it, and returns the entries the state does not list yet.
func (s *imapSession) prune(state *mboxState) (fresh []agent.Entry, changed bool, err error) {
	pending, err := s.mb.Pending()
	if err != nil {
		return nil, false, fail.Temp(err)
	}
	known := state.names()
	s.entries = map[string]agent.Entry{}
	for _, e := range pending {
		s.entries[e.Name] = e
		if !known[e.Name] {
			fresh = append(fresh, e)
		}
	}
	kept := state.Msgs[:0]
	for _, r := range state.Msgs {
		if _, ok := s.entries[r.Name]; ok {
			kept = append(kept, r)
		} else {
			changed = true
			s.cache.remove(r.Name)
		}
	}
	state.Msgs = kept
	return fresh, changed, nil
}

func (st *mboxState) names() map[string]bool {
	known := make(map[string]bool, len(st.Msgs))
	for _, r := range st.Msgs {
		known[r.Name] = true
	}
	return known
}

// add lists e under the next UID.
func (st *mboxState) add(e agent.Entry, size int64) {
	st.Msgs = append(st.Msgs, record{UID: st.UIDNext, Name: e.Name, Size: size, Date: int64(min(e.N.Date, 1<<62))})
	st.UIDNext++
}

// entry is the pending entry of a record; the queue is listed again when
// another session added it.
func (s *imapSession) entry(name string) (agent.Entry, bool) {
	if e, ok := s.entries[name]; ok {
		return e, true
	}
	pending, err := s.mb.Pending()
	if err != nil {
		return agent.Entry{}, false
	}
	for _, e := range pending {
		s.entries[e.Name] = e
	}
	e, ok := s.entries[name]
	return e, ok
}

var _ = imap.FlagSeen
