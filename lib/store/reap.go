package store

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"im2000/lib/durable"
	"im2000/lib/msgid"
)

// Removing a message (a reaping at the end of its lifetime, an early
// reclaim, a cancel) goes in an order that a crash at any point leaves
// either the whole message or nothing, and that a rerun finishes:
//
//  1. under the message's flock (no status update in flight), mark it:
//     reap/<id> -> ../msg/<id>, fsynced;
//  2. remove its queue links, its locator link (rid.go), the links of its
//     list ids (and of recipient ids that have one, handed out before
//     they were derived) and its list entries, and fsync their
//     directories: from here no retrieval finds
//     it and notifyd's next update of it finds it gone;
//  3. remove its status snapshot, journals and read counters;
//  4. remove msg/<id> under the quota counter's lock (usage.go);
//  5. remove the mark.
//
// Every step is idempotent. Reap starts with the marks it finds: a message
// still there is removed from step 2 again; a mark whose message is gone is
// just removed. Between 1 and 4 the message is still in msg/ but no index
// leads to it, and Track says it is gone (its status is).

// remove removes message id of the account by the steps above.
func (a *Account) remove(id msgid.ID) error {
	m, err := a.Open(id)
	if err != nil {
		return err
	}
	defer m.Close()
	return a.removeOpen(m)
}

// removeOpen removes an open message. Two removers (two cancels, a cancel
// and a Reap) may both have opened it before either took the lock: the one
// that waited finds msg/<id> gone and must neither remove it again nor
// count its octets off the quota twice (issue 17 review: a sender could so
// exceed its quota without limit).
func (a *Account) removeOpen(m *Message) error {
	id := m.Env.ID
	if err := flock(m.f); err != nil {
		return err
	}
	if there, err := a.stillThere(m); err != nil {
		return err
	} else if !there {
		return ErrNoSuch
	}
	if _, err := durable.Mkdir(filepath.Join(a.dir, "reap"), 0o700); err != nil {
		return err
	}
	mark := a.path("reap", id)
	if err := os.Symlink(filepath.Join("..", "msg", id.String()), mark); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	if err := durable.SyncDir(filepath.Join(a.dir, "reap")); err != nil {
		return err
	}
	return a.finish(m)
}

// finish does steps 2 to 5 for a marked message, open and locked.
func (a *Account) finish(m *Message) error {
	id, env := m.Env.ID, m.Env
	dirs := map[string]bool{}
	unlink := func(path string) error {
		err := os.Remove(path)
		if err == nil {
			dirs[filepath.Dir(path)] = true
		}
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	var first error
	keep := func(err error) {
		if err != nil && first == nil {
			first = err
		}
	}
	keep(unlink(a.path("todo", id)))
	keep(unlink(a.path("queue", id)))
	keep(unlink(a.expirePath(env)))
	// Its own: a commit never replaces another message's (rid.go).
	if t, err := os.Readlink(a.s.locatorPath(id)); err == nil && t == filepath.Join("..", a.Name, "msg", id.String()) {
		keep(unlink(a.s.locatorPath(id)))
	}
	for i, r := range env.Recipients {
		if !a.s.derived(env, i) { // handed out with a link of its own
			keep(unlink(a.s.rcptPath(r.ID)))
		}
	}
	posted := int64(0)
	if len(env.Lists) > 0 {
		posted = a.listsPosted(id)
	}
	for _, l := range env.Lists {
		keep(unlink(a.s.rcptPath(l.ID)))
		if posted > 0 {
			keep(unlink(a.s.listEntry(l.Name, time.Unix(posted, 0), l.ID)))
		} else {
			// Committed before the snapshot kept the entries' time (or
			// its snapshot is gone: then so are the entries, step 2
			// came before 3): within a session's length of the
			// submission's start. A glob reads the whole list day.
			for _, day := range []time.Time{env.Submitted, env.Submitted.Add(24 * time.Hour)} {
				found, _ := filepath.Glob(filepath.Join(a.s.listDay(l.Name, day), "*."+l.ID.String()))
				for _, f := range found {
					keep(unlink(f))
				}
			}
		}
		keep(unlink(a.readsPath(id, l.ID)))
	}
	for dir := range dirs {
		keep(durable.SyncDir(dir))
	}
	if first != nil {
		return first // the mark stays: the next Reap tries again
	}
	a.removeStatus(id)
	if err := durable.SyncDir(filepath.Join(a.dir, "status")); err != nil {
		return err
	}
	fi, err := m.f.Stat()
	if err != nil {
		return err
	}
	u, err := a.lockUsage()
	if err != nil {
		return err
	}
	// Checked again under the counter's lock, which every unlink of msg/
	// holds: the octets come off only with the unlink that removes them.
	there, err := a.stillThere(m)
	if err == nil && there {
		err = u.change(-fi.Size(), func() error {
			if err := os.Remove(a.path("msg", id)); err != nil {
				return err // not-exist too: the counter stays pending, to be rebuilt
			}
			return durable.SyncDir(filepath.Join(a.dir, "msg"))
		})
	} else if err == nil {
		err = ErrNoSuch // another remover's: it removes the mark
	}
	u.unlock()
	if err != nil {
		return err
	}
	os.Remove(a.path("reap", id))
	return nil
}

// listsPosted is the time the commit named the message's list entries by,
// from its status snapshot; 0 if it does not say.
func (a *Account) listsPosted(id msgid.ID) int64 {
	b, err := os.ReadFile(a.path("status", id))
	if err != nil {
		return 0
	}
	st, err := ParseStatus(b)
	if err != nil {
		return 0
	}
	return st.posted
}

// stillThere reports whether msg/<id> is still the file m has open.
func (a *Account) stillThere(m *Message) (bool, error) {
	open, err := m.f.Stat()
	if err != nil {
		return false, err
	}
	fi, err := os.Stat(a.path("msg", m.Env.ID))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return os.SameFile(fi, open), nil
}

// finishMarked completes the removals a crash interrupted.
func (a *Account) finishMarked() (int, error) {
	ents, err := os.ReadDir(filepath.Join(a.dir, "reap"))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range ents {
		id, err := msgid.Parse(e.Name())
		if err != nil {
			continue
		}
		m, err := a.Open(id)
		if errors.Is(err, ErrNoSuch) {
			os.Remove(a.path("reap", id)) // step 4 was done
			continue
		}
		if err != nil {
			return n, err
		}
		err = flock(m.f)
		there := false
		if err == nil {
			there, err = a.stillThere(m)
		}
		if err == nil && there {
			err = a.finish(m)
		}
		m.Close()
		if errors.Is(err, ErrNoSuch) || (err == nil && !there) {
			continue // removed by a cancel or Reap it waited for
		}
		if err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// Reclaimable reports whether every recipient of a message without lists
// has silenced and unpinned it: what an early reclaim waits for. A
// recipient who failed for good never silences; such a message waits for
// its lifetime's end. A list message never is: anyone may read it later.
func Reclaimable(env *Envelope, st *Status) bool {
	if len(env.Lists) > 0 || len(st.Recipients) == 0 {
		return false
	}
	for _, r := range st.Recipients {
		if r.Notification != Silenced || r.Pinned {
			return false
		}
	}
	return true
}

// Reaped counts what a Reap removed.
type Reaped struct {
	Expired, Reclaimed, Finished int
}

// Reap removes every message past its lifetime at now and, in the accounts
// for which early says so, every Reclaimable one, and finishes removals a
// crash interrupted. It reads each message's envelope (msg/ a slice at a
// time) and, for early reclaim, its status.
func (s *Store) Reap(now time.Time, early func(account string) bool) (Reaped, error) {
	var r Reaped
	accounts, err := s.Accounts()
	if err != nil {
		return r, err
	}
	var first error
	keep := func(err error) {
		if err != nil && first == nil {
			first = err
		}
	}
	for _, name := range accounts {
		a := &Account{s: s, Name: name, dir: filepath.Join(s.Root, name)}
		n, err := a.finishMarked()
		r.Finished += n
		keep(err)
		keep(a.reapAccount(now, early != nil && early(name), &r))
	}
	return r, first
}

func (a *Account) reapAccount(now time.Time, early bool, r *Reaped) error {
	indexed := a.expireIndexed()
	if indexed && !early {
		return a.reapIndexed(now, r) // expire.go
	}
	// The whole archive: for early reclaim, or to build the expiry index.
	linked := map[string]bool{}
	d, err := os.Open(filepath.Join(a.dir, "msg"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer d.Close()
	var first error
	for {
		ents, err := d.ReadDir(256)
		for _, e := range ents {
			id, perr := msgid.Parse(e.Name())
			if perr != nil {
				continue
			}
			expired, reclaim := a.due(id, now, early)
			if !expired && !reclaim {
				if !indexed {
					if dir, err := a.linkOpen(id); err == nil {
						linked[dir] = true
					} else if !errors.Is(err, ErrNoSuch) && first == nil {
						first = err
					}
				}
				continue
			}
			if rerr := a.remove(id); rerr != nil && !errors.Is(rerr, ErrNoSuch) && first == nil {
				first = rerr
			} else if rerr == nil && expired {
				r.Expired++
			} else if rerr == nil {
				r.Reclaimed++
			}
		}
		if err == io.EOF || len(ents) == 0 {
			if first == nil && !indexed {
				first = a.markIndexed(linked)
			}
			return first
		}
		if err != nil {
			return err
		}
	}
}

// linkOpen makes message id's expiry link if it is missing.
func (a *Account) linkOpen(id msgid.ID) (string, error) {
	m, err := a.Open(id)
	if err != nil {
		return "", err
	}
	defer m.Close()
	return a.linkExpiry(m.Env)
}

// due says whether a message is past its lifetime, or reclaimable early.
func (a *Account) due(id msgid.ID, now time.Time, early bool) (expired, reclaim bool) {
	m, err := a.Open(id)
	if err != nil {
		return false, false
	}
	defer m.Close()
	if now.After(m.Env.Expires()) {
		return true, false
	}
	if !early {
		return false, false
	}
	st, err := a.Status(id)
	return false, err == nil && Reclaimable(m.Env, st)
}
