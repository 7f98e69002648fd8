package main

// Changes: flags (STORE, and \Seen by FETCH), expunges (EXPUNGE, UID
// EXPUNGE, MOVE), and what other sessions and the agent changed (Poll,
// Idle). A message leaves the mailbox only once its store took the
// silence: the pending entry goes (lib/inbox.Done), then the record. A
// message whose store cannot be reached stays, \Deleted, for a later
// EXPUNGE.

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"im2000/lib/agent"
	"im2000/lib/inbox"
)

func dateOf(unix int64) time.Time { return time.Unix(unix, 0).UTC() }

// storeFlags changes the flags of the messages ms in the state, durably.
// A record is the view's message only with the same UID and entry name,
// under the same UIDVALIDITY (a state begun again reuses UIDs).
func (s *imapSession) storeFlags(ms []*viewMsg, op imap.StoreFlagsOp, flags []imap.Flag) error {
	_, err := s.changeFlags(ms, op, flags)
	return err
}

// changeFlags is storeFlags returning each message's flags as recorded
// after the change (other sessions' flags merged in), nil for a message
// no longer in the state (expunged elsewhere: sync tells the client).
func (s *imapSession) changeFlags(ms []*viewMsg, op imap.StoreFlagsOp, flags []imap.Flag) ([][]imap.Flag, error) {
	out := make([][]imap.Flag, len(ms))
	_, before, after, err := lockedChange(s.dir, func(state *mboxState) (bool, error) {
		if s.stale(state) {
			return false, errStale
		}
		changed := false
		for i, m := range ms {
			r := state.record(m)
			if r == nil {
				continue
			}
			if r.apply(op, flags) {
				changed = true
			}
			out[i] = r.flags()
		}
		return changed, nil
	})
	if err != nil {
		return nil, err
	}
	s.followed(before, after)
	return out, nil
}

// followed records that the view follows the state written by this
// session's own change, but only when the state it changed was the one
// the view followed: had another session changed it in between (B set a
// flag, or expunged, just before A's STORE), taking the new version as
// followed would keep B's change from A's client for good. Otherwise the
// view's version stays, and sync (the Poll after the command) tells the
// client what the others did, this session's own change being in its
// view already.
func (s *imapSession) followed(before, after stamp) {
	if before == s.seen {
		s.seen = after
	}
}

// errStale ends a session whose mailbox began again (update.go: stale).
// The session is over by then (BYE, the connection closed): the NO is
// for a connection that could not be closed.
var errStale = imapErr("", "the mailbox began again (new UIDVALIDITY): log in again")

// stale reports that the state began again (lost, or not parsing) since
// the session selected INBOX: every UID the client knows may now name
// another message. The client is told BYE and the connection closed
// (RFC 9051 lets a server end a session it cannot go on with): a session
// that went on would flag or silence messages by the new UIDs.
func (s *imapSession) stale(state *mboxState) bool {
	if !s.selected || s.validity == 0 || state.UIDValidity == s.validity {
		return false
	}
	if !s.gone {
		s.gone = true
		logValidityChanged(s.peer, s.user, s.validity, state.UIDValidity)
		if s.imapConn != nil {
			s.imapConn.Bye("the mailbox began again (new UIDVALIDITY): log in again")
		}
	}
	return true
}

// record is the state's record of the view's message m, or nil.
func (st *mboxState) record(m *viewMsg) *record {
	if r := st.find(m.uid); r != nil && r.Name == m.name {
		return r
	}
	return nil
}

func (s *imapSession) Store(w *imapserver.FetchWriter, numSet imap.NumSet, flags *imap.StoreFlags, _ *imap.StoreOptions) error {
	if s.readOnly {
		return errReadOnly
	}
	_, byUID := numSet.(imap.UIDSet)
	type hit struct {
		seq uint32
		m   *viewMsg
	}
	var hits []hit
	var ms []*viewMsg
	s.each(numSet, func(seq uint32, m *viewMsg) error {
		hits = append(hits, hit{seq, m})
		ms = append(ms, m)
		return nil
	})
	recorded, err := s.changeFlags(ms, flags.Op, flags.Flags)
	if errors.Is(err, errStale) {
		return errStale
	} else if err != nil {
		return tempError(s.peer, err)
	}
	for i, h := range hits {
		if recorded[i] == nil {
			continue // expunged by another session: sync tells the client
		}
		h.m.flags = recorded[i]
		if flags.Silent {
			continue
		}
		resp := w.CreateMessage(h.seq)
		if byUID {
			resp.WriteUID(h.m.uid)
		}
		resp.WriteFlags(h.m.flags)
		if err := resp.Close(); err != nil {
			return err
		}
	}
	return nil
}

// silence silences the messages at their stores (one session per store,
// lib/inbox.PerStore), takes those the stores took off the pending queue
// and out of the state, and returns their names and how many stay.
func (s *imapSession) silence(ms []*viewMsg) (map[string]bool, int) {
	var entries []agent.Entry
	for _, m := range ms {
		if e, ok := s.entry(m.name); ok {
			entries = append(entries, e)
		}
	}
	if s.limits.Lifetime > 0 {
		s.mb.SetDeadline(s.start.Add(s.limits.Lifetime))
	}
	ok := make([]bool, len(entries))
	inbox.PerStore(entries, func(i int, e agent.Entry) {
		err := s.mb.Silence(e)
		if err != nil {
			if !errors.Is(err, inbox.ErrDropped) { // else lib/inbox logged why it is gone
				logNotSilenced(s.peer, s.user, e.N.Notification.ID.String(), err)
			} else {
				ok[i] = true // off the queue already
			}
			return
		}
		s.mb.Done(e)
		ok[i] = true
	})
	done := map[string]bool{}
	for i, e := range entries {
		if ok[i] {
			done[e.Name] = true
		}
	}
	// A message whose entry is gone already (another session, a store
	// that no longer had it) leaves too.
	for _, m := range ms {
		if _, ok := s.entries[m.name]; !ok {
			done[m.name] = true
		}
	}
	if len(done) > 0 {
		_, before, after, err := lockedChange(s.dir, func(state *mboxState) (bool, error) {
			kept := state.Msgs[:0]
			for _, r := range state.Msgs {
				if !done[r.Name] {
					kept = append(kept, r)
				}
			}
			changed := len(kept) != len(state.Msgs)
			state.Msgs = kept
			return changed, nil
		})
		if err != nil {
			logStateFailed(s.peer, s.user, err)
		} else {
			s.followed(before, after)
		}
		for name := range done {
			s.cache.remove(name)
			delete(s.entries, name)
		}
	}
	return done, len(ms) - len(done)
}

// expungeView drops the messages done from the view, telling the client
// with EXPUNGE responses, highest sequence number first so that none
// changes the numbers of those still to come.
func (s *imapSession) expungeView(done map[string]bool, write func(uint32) error) error {
	for i := len(s.view) - 1; i >= 0; i-- {
		if done[s.view[i].name] {
			if err := write(uint32(i + 1)); err != nil {
				return err
			}
			s.view = slices.Delete(s.view, i, i+1)
		}
	}
	return nil
}

// Expunge after EXAMINE expunges nothing: CLOSE calls it too (the
// library cannot tell the two apart), and RFC 9051 says CLOSE of a
// read-only mailbox removes nothing.
func (s *imapSession) Expunge(w *imapserver.ExpungeWriter, uids *imap.UIDSet) error {
	if s.readOnly {
		return nil
	}
	state, _, err := readState(s.dir)
	if err != nil {
		return tempError(s.peer, err)
	}
	if s.stale(state) {
		return errStale
	}
	var ms []*viewMsg
	for _, m := range s.view {
		if m.gone || (uids != nil && !uids.Contains(m.uid)) {
			continue
		}
		if r := state.record(m); r != nil && r.has(imap.FlagDeleted) {
			ms = append(ms, m)
		}
	}
	done, kept := s.silence(ms)
	if err := s.expungeView(done, w.WriteExpunge); err != nil {
		return err
	}
	logExpunged(s.peer, s.user, len(done), kept)
	if kept > 0 {
		return imapErr(imap.ResponseCodeUnavailable, fmt.Sprintf("%d messages could not be silenced at their senders' stores now; they stay, marked \\Deleted", kept))
	}
	return nil
}

// Move to any other name deletes: there is nowhere else for a message to
// go, and a client's "move to Trash" means the user is done with it.
func (s *imapSession) Move(w *imapserver.MoveWriter, numSet imap.NumSet, dest string) error {
	if s.readOnly {
		return errReadOnly
	}
	if isInbox(dest) {
		return imapErr(imap.ResponseCodeCannot, "the messages are in INBOX already")
	}
	var ms []*viewMsg
	s.each(numSet, func(_ uint32, m *viewMsg) error {
		ms = append(ms, m)
		return nil
	})
	done, kept := s.silence(ms)
	if err := s.expungeView(done, w.WriteExpunge); err != nil {
		return err
	}
	logMoved(s.peer, s.user, dest, len(done), kept)
	if kept > 0 {
		return imapErr(imap.ResponseCodeUnavailable, fmt.Sprintf("%d messages could not be silenced at their senders' stores now; they stay", kept))
	}
	return nil
}

// Poll tells the client what changed since its last command: other
// sessions' flags and expunges, and new messages. The agent is asked for
// new notifications at most once per imappoll.
func (s *imapSession) Poll(w *imapserver.UpdateWriter, allowExpunge bool) error {
	if s.mb == nil {
		return nil
	}
	if time.Since(s.lastTake) >= s.poll {
		if err := s.refresh(true); err != nil {
			logStateFailed(s.peer, s.user, err)
		}
	}
	return s.sync(w, allowExpunge)
}

// sync brings the view up to the state file, if it changed.
func (s *imapSession) sync(w *imapserver.UpdateWriter, allowExpunge bool) error {
	if !s.selected {
		return nil
	}
	// Under the shared lock (state.go): the same state file then means
	// the journal the view's offset is in, grown only by appends.
	lock, err := lockShared(s.dir)
	if err != nil {
		logStateFailed(s.peer, s.user, err)
		return nil // the next command tries again
	}
	cur := currentStamp(s.dir)
	if cur.file == s.seen.file && cur.jsize > s.seen.jsize {
		// Only sizes were recorded (sizes.go): read the new lines alone.
		if lines, to, err := readSizes(s.dir, s.seen.jsize); err == nil {
			s.viewSizes(lines)
			s.seen.jsize = to
			cur = s.seen
		}
	}
	closeLock(lock)
	if cur == s.seen {
		if !allowExpunge {
			return nil
		}
		return s.reap(w)
	}
	state, st, err := readState(s.dir)
	if err != nil {
		return nil // a corrupt file is replaced by the next update
	}
	if s.stale(state) {
		return errStale
	}
	s.seen = st
	for _, m := range s.view {
		r := state.record(m)
		if r == nil {
			m.gone = true
			s.cache.remove(m.name) // this session's FETCH may have cached it meanwhile
			continue
		}
		m.size, m.exact = r.Size, r.Exact // another session's first whole fetch
		if f := r.flags(); !slices.Equal(f, m.flags) {
			m.flags = f
			if err := w.WriteMessageFlags(s.seqOf(m), m.uid, f); err != nil {
				return err
			}
		}
	}
	if allowExpunge {
		if err := s.reap(w); err != nil {
			return err
		}
	}
	last := imap.UID(0)
	if len(s.view) > 0 {
		last = s.view[len(s.view)-1].uid
	}
	added := false
	for i := range state.Msgs {
		r := &state.Msgs[i]
		if r.UID > last {
			s.view = append(s.view, &viewMsg{uid: r.UID, name: r.Name, size: r.Size, exact: r.Exact, date: r.Date, flags: r.flags()})
			added = true
		}
	}
	s.uidNext = state.UIDNext
	if added {
		return w.WriteNumMessages(uint32(len(s.view)))
	}
	return nil
}

// reap tells the client of the messages expunged elsewhere.
func (s *imapSession) reap(w *imapserver.UpdateWriter) error {
	gone := map[string]bool{}
	for _, m := range s.view {
		if m.gone {
			gone[m.name] = true
		}
	}
	if len(gone) == 0 {
		return nil
	}
	return s.expungeView(gone, w.WriteExpunge)
}

func (s *imapSession) seqOf(m *viewMsg) uint32 {
	for i, v := range s.view {
		if v == m {
			return uint32(i + 1)
		}
	}
	return 0
}
