package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"im2000/lib/durable"
	"im2000/lib/msgid"
)

// The queue has two stages, as qmail's todo/ and info/: a commit links
// todo/<id>; im2000-notifyd, when the message enters its in-memory
// schedule, moves that link to queue/<id>; Done removes it when notifyd has
// no more work for the message. So todo/ holds only what notifyd has not
// seen yet, and a new message costs notifyd one short directory read,
// however many messages wait in queue/ for their recipients. At start
// notifyd reads both.

// Queue lists the messages in notifyd's schedule.
func (a *Account) Queue() ([]msgid.ID, error) { return a.links("queue") }

// links lists the identifiers linked in dir whose message is committed. A
// link made by a commit that never happened points at nothing: not work,
// just debris for Clean.
func (a *Account) links(dir string) ([]msgid.ID, error) {
	ents, err := os.ReadDir(filepath.Join(a.dir, dir))
	if errors.Is(err, fs.ErrNotExist) && dir == "queue" {
		return nil, nil // an archive made before queue/ existed
	}
	if err != nil {
		return nil, err
	}
	var ids []msgid.ID
	for _, e := range ents {
		if id, err := msgid.Parse(e.Name()); err == nil {
			if _, err := os.Stat(a.path("msg", id)); err == nil {
				ids = append(ids, id)
			}
		}
	}
	return ids, nil
}

// Take moves a message from todo/ to queue/: notifyd has it in its
// schedule. The rename is not synced here; SyncQueue syncs queue/ once for
// many. Until then a crash may leave the link in todo/, which notifyd reads
// at start as well: the message is found either way.
func (a *Account) Take(id msgid.ID) error {
	err := os.Rename(a.path("todo", id), a.path("queue", id))
	if errors.Is(err, fs.ErrNotExist) {
		// An archive made before queue/ existed gets it now.
		if _, serr := os.Stat(filepath.Join(a.dir, "queue")); errors.Is(serr, fs.ErrNotExist) {
			if _, err := durable.Mkdir(filepath.Join(a.dir, "queue"), 0o700); err != nil {
				return err
			}
			err = os.Rename(a.path("todo", id), a.path("queue", id))
		}
	}
	return err
}

// SyncQueue makes the Takes so far durable.
func (a *Account) SyncQueue() error { return durable.SyncDir(filepath.Join(a.dir, "queue")) }

// Todo lists the messages committed but not yet in notifyd's schedule.
func (a *Account) Todo() ([]msgid.ID, error) { return a.links("todo") }

// Done removes the message's queue entry, in todo/ or queue/: notifyd has
// no more work for it.
func (a *Account) Done(id msgid.ID) error {
	for _, dir := range []string{"todo", "queue"} {
		err := os.Remove(a.path(dir, id))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		if err := durable.SyncDir(filepath.Join(a.dir, dir)); err != nil {
			return err
		}
	}
	return nil
}

// Committed reports whether the message file is there: Cancel unlinks it
// first, under the sidecar lock.
func (a *Account) Committed(id msgid.ID) bool {
	_, err := os.Lstat(a.path("msg", id))
	return err == nil
}

// Existing opens an archive that exists, creating nothing: for names that
// come from outside (notifyd's trigger FIFO, which anyone may write).
func (s *Store) Existing(name string) (*Account, error) {
	if err := CheckAccount(name); err != nil {
		return nil, err
	}
	a := &Account{s: s, Name: name, dir: filepath.Join(s.Root, name)}
	fi, err := os.Stat(filepath.Join(a.dir, "todo"))
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("%s is not an archive", a.dir)
	}
	return a, nil
}

// ErrFinished is a resend of a message with nobody left to notify.
var ErrFinished = errors.New("every recipient has silenced or failed for good: nobody to notify")

// Resent is what a Resend did.
type Resent struct {
	Recipients int       // not silenced nor failed for good: all made due
	Held       int       // of those, due only at their last attempt plus the floor
	Until      time.Time // the latest such due time
	Moved      int       // of those, the ones this resend made due sooner
}

// Resend makes every recipient of the message who has not silenced or
// failed for good due for a notification now (the sender's im2000-status
// --resend), but never sooner than floor after its last attempt, and never
// later than it was due: a loop of resends notifies an agent at most once
// a floor (issue 17 review: it re-notified every agent once a second). It
// journals their next attempts, moves the queue link back to todo/ and
// wakes notifyd, whose intake reads todo/ at once: a message it already
// has in its schedule takes the earlier due times
// (im2000-notifyd/schedule.go). If no due time moved, it does neither, so
// a repeated resend costs notifyd nothing. A message past its lifetime is
// ErrNoSuch, as everywhere.
func (a *Account) Resend(id msgid.ID, now time.Time, floor time.Duration) (Resent, error) {
	var r Resent
	now = now.Truncate(time.Second)
	err := a.Update(id, func(env *Envelope, st *Status) error {
		if now.After(env.Expires()) {
			return ErrNoSuch
		}
		for i := range st.Recipients {
			rc := &st.Recipients[i]
			if rc.Notification.Final() {
				continue
			}
			r.Recipients++
			due := now
			if !rc.Last.IsZero() && rc.Last.Add(floor).After(now) {
				due = rc.Last.Add(floor).Truncate(time.Second)
			}
			if rc.Next.IsZero() || !rc.Next.After(due) {
				due = now // due already, or sooner: never later
				if rc.Next.After(now) {
					due = rc.Next
				}
			} else {
				rc.Next = due
				r.Moved++
			}
			if due.After(now) {
				r.Held++
				if due.After(r.Until) {
					r.Until = due
				}
			}
		}
		if r.Recipients == 0 {
			return ErrFinished
		}
		return nil
	})
	if err != nil {
		return r, err
	}
	if r.Moved == 0 && (linked(a.path("queue", id)) || linked(a.path("todo", id))) {
		return r, nil // on notifyd's queue with these due times already
	}
	todo := a.path("todo", id)
	err = os.Rename(a.path("queue", id), todo)
	if errors.Is(err, fs.ErrNotExist) {
		// Already in todo/, or off the queue (notifyd dropped it while
		// it was not due): link it again.
		err = os.Symlink(filepath.Join("..", "msg", id.String()), todo)
		if errors.Is(err, fs.ErrExist) {
			err = nil
		}
	}
	if err != nil {
		return r, err
	}
	if err := durable.SyncDir(filepath.Join(a.dir, "todo")); err != nil {
		return r, err
	}
	if a.s != nil {
		a.s.Trigger(a.Name)
	}
	return r, nil
}

func linked(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}
