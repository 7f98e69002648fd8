// Package agent is a recipient notification agent's spool: one directory
// per account it serves, one file per notification, named by the store
// and identifier it is about so that a store's re-sends do not add copies.
//
// A notification is only a hint (the store re-sends until the recipient
// silences the message), so losing one in a crash costs a delay, not mail:
// files are written to a temporary name and renamed, and fsync is optional.
package agent

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"

	"golang.org/x/crypto/cryptobyte"

	"im2000/lib/addr"
	"im2000/lib/durable"
	"im2000/lib/store"
	"im2000/lib/wire"
	"im2000/lib/wire/rnaqp"
)

// Spool is an agent's directory: <dir>/<account>/<key> for notifications,
// <dir>/.tmp for writes in progress. An account is served when its
// directory exists.
//
// Every account has a counter of what it holds in <dir>/.count/<account>
// (see quota.go), kept by Put and Remove, so that a quota costs O(1) per
// notification however many files the spool holds.
type Spool struct {
	Dir    string
	Sync   bool   // fsync every notification (off by default: see the package comment)
	Limits Limits // zero: none
}

// Open checks the spool directory and makes its temporary directory.
func Open(dir string, sync bool) (*Spool, error) {
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("agent spool %s: not a directory (create it, and one directory per account)", dir)
	}
	for _, d := range []string{".tmp", ".count"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return nil, err
		}
	}
	return &Spool{Dir: dir, Sync: sync}, nil
}

// MaxSender is the longest sender an agent takes, in octets: RFC 5321's
// 64-octet local part, "@" and a 255-octet domain.
const MaxSender = 320

// ErrSender is a notification's sender that is not a valid mailbox.
var ErrSender = errors.New("sender is not a valid mailbox")

// CheckSender checks a notification's sender: a mailbox as lib/addr
// parses it, at most MaxSender octets, without control characters (C0,
// DEL, C1) anywhere, quoted or not. An agent answers any other sender
// refused (DESIGN.md section 3): it would reach logs, terminals and
// mailbox files as it stands.
func CheckSender(sender string) error {
	if len(sender) > MaxSender {
		return fmt.Errorf("%w: %d octets, over %d", ErrSender, len(sender), MaxSender)
	}
	if strings.IndexFunc(sender, unicode.IsControl) >= 0 {
		return fmt.Errorf("%w: %q has a control character", ErrSender, sender)
	}
	if _, err := addr.Parse(sender); err != nil {
		return fmt.Errorf("%w: %q: %v", ErrSender, sender, err)
	}
	return nil
}

// Account returns the account a recipient's local part names, if the
// spool serves it. Local parts are matched without regard to case
// (Bob@example.net reaches bob): account directories are named in
// lowercase, so a directory with capitals in its name serves no one.
func (s *Spool) Account(local string) (string, bool) {
	account := strings.ToLower(local)
	return account, s.Serves(account)
}

// Serves reports whether account has a directory here.
func (s *Spool) Serves(account string) bool {
	if store.CheckAccount(account) != nil {
		return false
	}
	fi, err := os.Stat(filepath.Join(s.Dir, account))
	return err == nil && fi.IsDir()
}

// Key names a notification by its store and identifier.
func Key(n *rnaqp.NotificationAndLocalData) string {
	var b cryptobyte.Builder
	wire.AddLocation(&b, 0, n.Notification.StoreClear)
	h := sha256.New()
	h.Write(b.BytesOrPanic())
	h.Write(n.Notification.ID[:])
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// Has reports whether account already holds the notification (a re-send).
func (s *Spool) Has(account string, n *rnaqp.NotificationAndLocalData) bool {
	_, err := os.Lstat(filepath.Join(s.Dir, account, Key(n)))
	return err == nil
}

// Put keeps a notification for account, once per store and identifier.
// It fails with ErrFull when the account is at its quota.
func (s *Spool) Put(account string, n *rnaqp.NotificationAndLocalData) error {
	return s.PutAll(account, []*rnaqp.NotificationAndLocalData{n}, nil)[0]
}

// PutAll keeps notifications for account under one lock of its counters
// (the account's, and its submitting address's: see held.go), and returns
// an error (or nil: kept, or already here) for each. ErrFull (wrapped, for
// a disk that has no room) is a notification over a quota, over the disk
// reserves or share when room is given (see fits), or that met a full disk.
func (s *Spool) PutAll(account string, ns []*rnaqp.NotificationAndLocalData, room *Room) []error {
	errs := make([]error, len(ns))
	c, err := s.lockCount(account)
	if err != nil {
		if diskFull(err) {
			err = fmt.Errorf("%w: %w", ErrFull, err)
		}
		for i := range errs {
			errs[i] = err
		}
		return errs
	}
	defer c.close()
	// The address's counters, for the notifications from one address at a
	// time (agentd's are all from one): never two addresses locked at once.
	var h holders
	key := ""
	defer func() { h.closeHeld() }()
	wrote := false
	for i, n := range ns {
		final := filepath.Join(s.Dir, account, Key(n))
		if _, err := os.Lstat(final); err == nil {
			continue // a re-send: already here
		}
		if k := SubmitterKey(n); k != key || h.acct == nil {
			h.closeHeld()
			h, key = holders{}, k
			if k != "" {
				if h, err = s.lockHeld(k, account); err != nil {
					h = holders{}
					errs[i] = heldErr(err)
					key = "\x00" // try again at the next one
					continue
				}
			}
			h.acct = c
		}
		b := n.Marshal()
		errs[i] = s.put(h, final, b, room)
		if errs[i] == nil {
			wrote = true
		}
	}
	if wrote && s.Sync {
		if err := durable.SyncDir(filepath.Join(s.Dir, account)); err != nil {
			for i := range errs {
				if errs[i] == nil {
					errs[i] = err
				}
			}
		}
	}
	return errs
}

func heldErr(err error) error {
	if diskFull(err) {
		return fmt.Errorf("%w: %w", ErrFull, err)
	}
	return err
}

// put keeps one notification if it fits, and counts it.
func (s *Spool) put(h holders, final string, b []byte, room *Room) error {
	// The quotas first: a flood at a full recipient costs no statfs.
	if !s.fitsAgain(h, len(b), nil) {
		return ErrFull
	}
	unlock := func() {}
	if room != nil {
		// The room is measured and the data written under the spool's
		// room lock, so that no session spends room another has just
		// measured; the lock is let go before the fsync, if any.
		u, err := room.lock()
		if err != nil {
			return heldErr(err)
		}
		once := false
		unlock = func() {
			if !once {
				once = true
				u()
			}
		}
		defer unlock()
		if err := room.refresh(); err != nil {
			return err
		}
		if !s.fitsAgain(h, len(b), room) {
			return ErrFull
		}
	}
	if err := s.write(final, b, unlock); err != nil {
		return heldErr(err)
	}
	for _, c := range []*counter{h.acct, h.addr, h.pair} {
		if c != nil {
			c.take(int64(len(b)))
		}
	}
	if room != nil {
		room.wrote(len(b))
	}
	return nil
}

// fitsAgain is fits, and when it says no, fits again after a recount of
// the counters that say no: a count may have drifted above the truth. At
// most every recountEvery, and only those counters: an address's recount
// reads the whole spool, so a notification for a full recipient must not
// cost it one.
func (s *Spool) fitsAgain(h holders, n int, room *Room) bool {
	if s.fits(h, n, room) {
		return true
	}
	now := time.Now()
	again := false
	for _, r := range []struct {
		c    *counter
		over bool
	}{
		{h.acct, !s.acctFits(h, n, room)},
		{h.pair, !s.acctFits(h, n, room)},
		{h.addr, !s.addrFits(h.addr, n, room)},
	} {
		if r.over && r.c != nil && r.c.mayRecount(now) && r.c.recount(now) == nil {
			again = true
		}
	}
	return again && s.fits(h, n, room)
}

// write puts one notification's file in place: a temporary file, renamed.
// written is called once the data is written (its blocks taken), before
// the fsync.
func (s *Spool) write(final string, b []byte, written func()) error {
	tmp := filepath.Join(s.Dir, ".tmp", filepath.Base(final)+"."+strconv.Itoa(os.Getpid())+"."+strconv.FormatInt(time.Now().UnixNano(), 36))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	written()
	if err == nil && s.Sync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		// List gives the oldest first by modification time, which the
		// kernel takes from a clock of a few milliseconds' grain: the
		// notifications of one batch, written in a row, would tie and come
		// out in any order (imapd gave the later of two the lower UID).
		// The nanosecond clock keeps the order they were written in.
		now := time.Now()
		err = os.Chtimes(tmp, now, now)
	}
	if err == nil {
		err = os.Rename(tmp, final)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

// Entry is a kept notification with its file name.
type Entry struct {
	Name string
	N    rnaqp.NotificationAndLocalData
}

// List returns account's notifications, oldest first, up to maxBytes of
// encoded notifications (at least one, if any). Unreadable files are
// removed: a notification the store will send again is no loss.
func (s *Spool) List(account string, maxBytes int) ([]Entry, error) {
	dir := filepath.Join(s.Dir, account)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	type file struct {
		name string
		t    time.Time
	}
	var files []file
	for _, e := range ents {
		if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() {
			files = append(files, file{e.Name(), fi.ModTime()})
		}
	}
	sort.Slice(files, func(i, j int) bool {
		if !files[i].t.Equal(files[j].t) {
			return files[i].t.Before(files[j].t)
		}
		return files[i].name < files[j].name // a tie: one order every time
	})
	var out []Entry
	size := 0
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(dir, f.name))
		if errors.Is(err, fs.ErrNotExist) {
			continue // taken by a concurrent session
		}
		if err != nil {
			return nil, err
		}
		var e Entry
		if err := e.N.Unmarshal(b); err != nil {
			s.Remove(account, []Entry{{Name: f.name}})
			continue
		}
		if len(out) > 0 && size+len(b) > maxBytes {
			break
		}
		e.Name = f.name
		size += len(b)
		out = append(out, e)
	}
	return out, nil
}

// Remove drops notifications that have been handed to the recipient, and
// takes them off the account's counter and their submitters' (held.go).
func (s *Spool) Remove(account string, entries []Entry) {
	c, err := s.lockCount(account)
	sizes := map[string][]int64{} // by submitter key
	var keys []string
	for _, e := range entries {
		path := filepath.Join(s.Dir, account, e.Name)
		fi, ferr := os.Lstat(path)
		if os.Remove(path) != nil || ferr != nil {
			continue
		}
		if err == nil {
			c.drop(fi.Size())
		}
		if k := SubmitterKey(&e.N); k != "" {
			if sizes[k] == nil {
				keys = append(keys, k)
			}
			sizes[k] = append(sizes[k], fi.Size())
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		h, herr := s.lockHeld(k, account)
		if herr != nil {
			continue // high until its recount
		}
		for _, n := range sizes[k] {
			h.addr.drop(n)
			h.pair.drop(n)
		}
		h.closeHeld()
	}
	if err == nil {
		c.close()
	}
}
