package store

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"

	"im2000/lib/msgid"
)

// Status reads a message's status: its snapshot with its journal folded
// in (journal.go), and the list counters. Readers take no lock.
func (a *Account) Status(id msgid.ID) (*Status, error) {
	sc, err := a.loadStatus(id)
	if err != nil {
		return nil, err
	}
	st := sc.st
	for i := range st.Lists {
		st.Lists[i].Retrievals += readTotal(a.readsPath(id, st.Lists[i].ID))
	}
	return st, nil
}

// readsPath is the counter of a list identifier's retrievals (reads.go).
func (a *Account) readsPath(id, lid msgid.ID) string {
	return a.path("status", id) + "." + lid.String() + ".reads"
}

// Update changes a message's status. Updates are serialised by an exclusive
// flock on the message file, which is never replaced, so that concurrent
// updaters in any number of processes never lose one another's changes.
// fn sees the envelope and the current status and changes the status in
// place; if it returns an error nothing is written.
func (a *Account) Update(id msgid.ID, fn func(*Envelope, *Status) error) error {
	m, err := a.Open(id)
	if err != nil {
		return err
	}
	defer m.Close()
	return m.Update(fn)
}

// Update changes the status of an open message, as Account.Update does.
// The lock is released once the change is appended, before its fsync
// (journal.go: record); Update returns when the change is durable. Only the recipients fn
// changes are written, a journal record each (journal.go); changes to
// Lists are not kept (their counters live in reads.go's files).
func (m *Message) Update(fn func(*Envelope, *Status) error) error {
	if err := flock(m.f); err != nil {
		return err
	}
	a := &Account{s: m.s, Name: m.Account, dir: m.dir}
	sc, err := a.loadLocked(m.Env.ID)
	if err != nil {
		return err
	}
	if !sc.st.matches(m.Env) {
		return corrupt("status %s does not match its envelope", m.Env.ID)
	}
	old := append([]RecipientStatus(nil), sc.st.Recipients...)
	if err := fn(m.Env, sc.st); err != nil {
		return err
	}
	if len(sc.st.Recipients) != len(old) {
		return errors.New("store: an update may not add or remove recipients")
	}
	sync, err := a.record(m.Env.ID, sc, old)
	if err != nil || sync == nil {
		return err
	}
	unlock(m.f)
	return sync()
}

func unlock(f *os.File) { unix.Flock(int(f.Fd()), unix.LOCK_UN) }

func flock(f *os.File) error {
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if err != unix.EINTR {
			return err
		}
	}
}
