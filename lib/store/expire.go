package store

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"

	"im2000/lib/durable"
	"im2000/lib/msgid"
)

// The expiry index makes reaping O(expired), not O(archive): Reap walked
// msg/ and read every envelope each reapinterval.
//
//	<account>/expire/<yyyymmdd>/<id> -> ../../msg/<id>
//	<account>/expire/complete            every message has its link
//
// The day is the UTC day the message's lifetime ends. The commit makes the
// link with its other index links, before its commit point, so a crash
// leaves at worst a link to nothing, which Reap removes once it is older
// than StaleAge (younger, it may be a commit under way). The removal
// unlinks it in its step 2 (reap.go). Reap reads only the days up to
// today's. An account without "complete" (a store from before the index,
// or one whose expire/ was removed) is walked the old way, which also links
// every message it finds, and then gets "complete": a commit meanwhile
// makes its own link, so nothing is missed. Accounts with early reclaim
// are walked the old way every time (reclaimable messages are not found
// by date).

const expireComplete = "complete"

// expireDay is the name of the day directory of a message's expiry.
func expireDay(env *Envelope) string { return env.Expires().UTC().Format("20060102") }

func (a *Account) expirePath(env *Envelope) string {
	return filepath.Join(a.dir, "expire", expireDay(env), env.ID.String())
}

// makeExpireDay makes the day directory of env's expiry, durably.
func (a *Account) makeExpireDay(env *Envelope) error {
	if _, err := durable.Mkdir(filepath.Join(a.dir, "expire"), 0o700); err != nil {
		return err
	}
	_, err := durable.Mkdir(filepath.Join(a.dir, "expire", expireDay(env)), 0o700)
	return err
}

// expireIndexed reports whether the account's expiry index is complete.
func (a *Account) expireIndexed() bool {
	_, err := os.Stat(filepath.Join(a.dir, "expire", expireComplete))
	return err == nil
}

// linkExpiry makes a message's expiry link if it is missing (the walk that
// builds the index), and returns its day directory.
func (a *Account) linkExpiry(env *Envelope) (string, error) {
	if err := a.makeExpireDay(env); err != nil {
		return "", err
	}
	err := os.Symlink(filepath.Join("..", "..", "msg", env.ID.String()), a.expirePath(env))
	if err != nil && !errors.Is(err, fs.ErrExist) {
		return "", err
	}
	return filepath.Dir(a.expirePath(env)), nil
}

// markIndexed records that every message has its link, after the links'
// directories are durable.
func (a *Account) markIndexed(dirs map[string]bool) error {
	for d := range dirs {
		if err := durable.SyncDir(d); err != nil {
			return err
		}
	}
	if _, err := durable.Mkdir(filepath.Join(a.dir, "expire"), 0o700); err != nil {
		return err
	}
	return durable.WriteFile(filepath.Join(a.dir, "expire", expireComplete), nil, 0o600, filepath.Join(a.dir, "tmp"))
}

// reapIndexed removes the messages past their lifetime at now found in the
// expiry index's days up to now's, and the links to nothing a crash left
// there; a past day left empty is removed.
func (a *Account) reapIndexed(now time.Time, r *Reaped) error {
	root := filepath.Join(a.dir, "expire")
	ents, err := os.ReadDir(root)
	if err != nil {
		return err
	}
	today := now.UTC().Format("20060102")
	var days []string
	for _, e := range ents {
		if n := e.Name(); e.IsDir() && len(n) == 8 && n <= today {
			days = append(days, n)
		}
	}
	sort.Strings(days)
	var first error
	for _, day := range days {
		dir := filepath.Join(root, day)
		links, err := os.ReadDir(dir)
		if err != nil {
			if first == nil {
				first = err
			}
			continue
		}
		left := 0
		for _, l := range links {
			id, perr := msgid.Parse(l.Name())
			if perr != nil {
				left++
				continue
			}
			m, err := a.Open(id)
			if errors.Is(err, ErrNoSuch) {
				// Its message is gone, or not committed yet: a link
				// older than any commit takes is a crash's leftover.
				if fi, err := os.Lstat(filepath.Join(dir, l.Name())); err == nil && now.Sub(fi.ModTime()) > StaleAge {
					os.Remove(filepath.Join(dir, l.Name()))
					continue
				}
				left++
				continue
			}
			if err != nil {
				left++
				if first == nil {
					first = err
				}
				continue
			}
			expired := now.After(m.Env.Expires())
			if expired {
				err = a.removeOpen(m)
			}
			m.Close()
			switch {
			case !expired:
				left++
			case err == nil:
				r.Expired++
			case errors.Is(err, ErrNoSuch):
			default:
				left++
				if first == nil {
					first = err
				}
			}
		}
		if left == 0 && day < today {
			os.Remove(dir) // fails harmlessly if a late commit linked into it
		}
	}
	return first
}
