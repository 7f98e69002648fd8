package store

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"sync"
	"syscall"

	"im2000/lib/msgid"
)

// An updater parsed the whole snapshot and journal under the lock for
// every event: with 10,000 recipients a 700 kB parse per silence, the cost
// that dominated once the writes were small. A process that updates one
// message again and again (a retrieved session silencing, notifyd's
// recorder) keeps the folded state of the last message it updated, keyed
// by the snapshot's inode, size and time and the journal's inode, and
// reads only the journal's records past the offset it folded. Only under
// the message's lock, where nobody else appends or compacts; readers
// without the lock never use it.

var cached struct {
	sync.Mutex
	path     string // the snapshot's
	snap     fileKey
	snapLen  int
	journal  fileKey // size unused
	off      int64   // journal octets folded into st
	st       *Status // not handed out: copied
	hasState bool
}

type fileKey struct {
	ino, dev  uint64
	size, mod int64
}

func keyOf(fi os.FileInfo) (fileKey, bool) {
	sys, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileKey{}, false
	}
	return fileKey{ino: sys.Ino, dev: uint64(sys.Dev), size: fi.Size(), mod: fi.ModTime().UnixNano()}, true
}

func copyStatus(st *Status) *Status {
	c := *st
	c.Recipients = append([]RecipientStatus(nil), st.Recipients...)
	c.Lists = append([]ListStatus(nil), st.Lists...)
	return &c
}

// loadLocked is loadStatus for a caller holding the message's lock.
func (a *Account) loadLocked(id msgid.ID) (*sidecar, error) {
	path := a.path("status", id)
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNoSuch
	}
	if err != nil {
		return nil, err
	}
	snap, ok := keyOf(fi)
	cached.Lock()
	defer cached.Unlock()
	if ok && cached.hasState && cached.path == path && cached.snap == snap {
		if sc, ok := a.fromCache(id); ok {
			return sc, nil
		}
	}
	cached.hasState = false
	sc, err := a.loadStatus(id)
	if err != nil || !ok {
		return sc, err
	}
	jfi, err := os.Stat(a.journalPath(id, sc.st.gen))
	var jkey fileKey
	if err == nil {
		jkey, _ = keyOf(jfi)
	} else if !errors.Is(err, fs.ErrNotExist) || sc.size != 0 {
		return sc, nil // not cached
	}
	cached.path, cached.snap, cached.snapLen, cached.journal, cached.off = path, snap, sc.snapSize, jkey, sc.valid
	cached.st, cached.hasState = copyStatus(sc.st), true
	return sc, nil
}

// fromCache folds the journal's new records into the cached state.
func (a *Account) fromCache(id msgid.ID) (*sidecar, bool) {
	st := cached.st
	j, err := os.Open(a.journalPath(id, st.gen))
	if errors.Is(err, fs.ErrNotExist) && cached.off == 0 {
		return &sidecar{st: copyStatus(st), snapSize: cached.snapLen}, true
	}
	if err != nil {
		return nil, false
	}
	defer j.Close()
	jfi, err := j.Stat()
	if err != nil {
		return nil, false
	}
	jkey, ok := keyOf(jfi)
	if !ok || (cached.off > 0 && (jkey.ino != cached.journal.ino || jkey.dev != cached.journal.dev)) ||
		jfi.Size() < cached.off {
		return nil, false
	}
	b := make([]byte, jfi.Size()-cached.off)
	if _, err := j.ReadAt(b, cached.off); err != nil && err != io.EOF {
		return nil, false
	}
	recs, valid := parseJournal(b)
	st.fold(recs)
	cached.off += int64(valid)
	cached.journal = jkey
	return &sidecar{st: copyStatus(st), snapSize: cached.snapLen, valid: cached.off, size: jfi.Size()}, true
}
