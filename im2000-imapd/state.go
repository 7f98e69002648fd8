package main

// The mailbox's state, one file per user (imapstate/USER/imap.state): the
// UIDVALIDITY, the next UID, and for each message its UID, its entry in
// the pending queue, its size, date and flags. It is rewritten whole
// (tmp -> fsync -> rename -> fsync of the directory, lib/durable) under an
// flock on imapstate/USER/lock, so that several sessions of one user (each
// perhaps a process of its own under tcpserver) change it one at a time,
// and a crash leaves the old state or the new, never a mix. Readers read
// it under a shared flock of the same file: the state and its sizes
// journal (sizes.go: exact sizes, appended in O(1)) change together (a
// rewrite renames the state, then empties the journal), and a reader
// between the two would pair the new state with the old journal's
// length. A session sees the others' changes by the file's identity
// (inode, size, mtime) or the size of the journal changing.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/emersion/go-imap/v2"

	"im2000/lib/durable"
	"im2000/lib/fail"
)

const stateFile = "imap.state"

// maxStateFile bounds the read of a state file: about 200 octets a
// message, so room for some hundred thousand messages.
const maxStateFile = 64 << 20

// record is one message of the mailbox.
type record struct {
	UID   imap.UID `json:"uid"`
	Name  string   `json:"name"`            // its entry in the pending queue (agent.Key)
	Size  int64    `json:"size"`            // the notification's, then (Exact) the octets first fetched
	Exact bool     `json:"exact,omitempty"` // Size is what BODY[] serves, for good
	Date  int64    `json:"date"`            // of the notification, Unix seconds: INTERNALDATE
	Flags []string `json:"flags,omitempty"`
}

// mboxState is the content of the state file.
type mboxState struct {
	UIDValidity uint32   `json:"uidvalidity"`
	UIDNext     imap.UID `json:"uidnext"`
	Msgs        []record `json:"msgs"`
}

// stamp identifies one version of the state: the state file's and the
// size of its sizes journal (sizes.go).
type stamp struct {
	file  fileStamp
	jsize int64
}

// fileStamp identifies one version of the state file.
type fileStamp struct {
	ino, size uint64
	mtime     int64
}

// readState reads the user's state; a missing file is an empty mailbox
// with no UIDVALIDITY yet (0: lockedUpdate makes one). A file that does
// not parse (it cannot be half written: it is renamed into place) is
// reported; lockedUpdate starts a new UIDVALIDITY over it. The sizes
// journal is merged in. It takes the shared lock; lockedChange, holding
// the exclusive one, calls readStateLocked.
func readState(dir string) (*mboxState, stamp, error) {
	lock, err := lockShared(dir)
	if err != nil {
		return nil, stamp{}, err
	}
	defer closeLock(lock)
	return readStateLocked(dir)
}

// readStateLocked is readState for a caller holding the user's lock.
func readStateLocked(dir string) (*mboxState, stamp, error) {
	s, st, err := readStateFile(dir)
	if err != nil {
		return s, st, err
	}
	if s.UIDValidity == 0 { // no state: a journal left is of none
		st.jsize = journalSize(dir)
		return s, st, nil
	}
	lines, jsize, err := readSizes(dir, 0)
	if err != nil {
		return nil, stamp{}, fail.Temp(err)
	}
	s.mergeSizes(lines)
	st.jsize = jsize
	return s, st, nil
}

func readStateFile(dir string) (*mboxState, stamp, error) {
	f, err := os.Open(filepath.Join(dir, stateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return &mboxState{UIDNext: 1}, stamp{}, nil
	}
	if err != nil {
		return nil, stamp{}, fail.Temp(err)
	}
	defer f.Close()
	fst, err := statOf(f)
	if err != nil {
		return nil, stamp{}, fail.Temp(err)
	}
	st := stamp{file: fst}
	raw, err := io.ReadAll(io.LimitReader(f, maxStateFile+1))
	if err != nil {
		return nil, stamp{}, fail.Temp(err)
	}
	var s mboxState
	if len(raw) > maxStateFile {
		return nil, st, errCorrupt{fmt.Errorf("%s is over %d octets", f.Name(), maxStateFile)}
	}
	if err := json.Unmarshal(raw, &s); err != nil || s.UIDValidity == 0 || s.UIDNext == 0 {
		return nil, st, errCorrupt{fmt.Errorf("%s does not parse: %v", f.Name(), err)}
	}
	return &s, st, nil
}

type errCorrupt struct{ error }

func statOf(f *os.File) (fileStamp, error) {
	fi, err := f.Stat()
	if err != nil {
		return fileStamp{}, err
	}
	sys, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileStamp{size: uint64(fi.Size()), mtime: fi.ModTime().UnixNano()}, nil
	}
	return fileStamp{ino: sys.Ino, size: uint64(fi.Size()), mtime: fi.ModTime().UnixNano()}, nil
}

// currentStamp is the state's stamp now, without reading it.
func currentStamp(dir string) stamp {
	f, err := os.Open(filepath.Join(dir, stateFile))
	if err != nil {
		return stamp{jsize: journalSize(dir)}
	}
	defer f.Close()
	st, _ := statOf(f)
	return stamp{file: st, jsize: journalSize(dir)}
}

// lockedUpdate runs change on the state under the user's lock and writes
// the state back durably when change says it changed it. A state without
// a UIDVALIDITY (new, or not parsing: logged) gets one from the clock, and
// is written whatever change says: the UIDVALIDITY must be on disk before
// any client sees a UID under it.
func lockedUpdate(dir string, change func(s *mboxState) (bool, error)) (*mboxState, stamp, error) {
	s, _, after, err := lockedChange(dir, change)
	return s, after, err
}

// lockedChange is lockedUpdate that also returns the stamp of the state
// as read under the lock, before the change: a session compares it with
// the version its view follows (update.go: followed), so that another
// session's change made just before its own is not taken for its own.
func lockedChange(dir string, change func(s *mboxState) (bool, error)) (_ *mboxState, before, after stamp, _ error) {
	lock, err := lockUser(dir)
	if err != nil {
		return nil, stamp{}, stamp{}, err
	}
	defer lock.Close()
	s, before, err := readStateLocked(dir)
	var bad errCorrupt
	fresh := false
	switch {
	case errors.As(err, &bad):
		logStateRestarted(bad.error)
		s, fresh = &mboxState{UIDNext: 1}, true
	case err != nil:
		return nil, stamp{}, stamp{}, err
	}
	if s.UIDValidity == 0 {
		if s.UIDValidity, err = newUIDValidity(dir); err != nil {
			return nil, stamp{}, stamp{}, fail.Temp(err)
		}
		fresh = true
		s.Msgs = nil
		s.UIDNext = 1
	}
	changed, err := change(s)
	if err != nil {
		return nil, stamp{}, stamp{}, err
	}
	if changed || fresh {
		raw, err := json.Marshal(s)
		if err != nil {
			return nil, stamp{}, stamp{}, err
		}
		if err := writeFile(filepath.Join(dir, stateFile), raw, dir); err != nil {
			return nil, stamp{}, stamp{}, fail.Temp(err)
		}
		// The state holds the journal's sizes now (readState merged them).
		if err := truncateSizes(dir); err != nil {
			return nil, stamp{}, stamp{}, fail.Temp(err)
		}
		return s, before, currentStamp(dir), nil
	}
	// Unchanged: before, whose journal length ends a whole line (the
	// file's own length may take in a torn line, not in the view).
	return s, before, before, nil
}

// validityFile keeps the last UIDVALIDITY handed out, apart from the
// state file, so that a state lost or unreadable is not the only record
// of it.
const validityFile = "uidvalidity"

// newUIDValidity is a UIDVALIDITY never handed out before, as RFC 9051
// asks: the clock in seconds, but at least one more than the last one
// (validityFile), for a state started again within the same second or
// after the clock went back. It is on disk (fsynced) before it is used.
func newUIDValidity(dir string) (uint32, error) {
	v := uint32(max(min(time.Now().Unix(), math.MaxUint32), 1))
	if raw, err := readBounded(filepath.Join(dir, validityFile), 32); err == nil {
		if old, err := strconv.ParseUint(strings.TrimSpace(string(raw)), 10, 32); err == nil && old < math.MaxUint32 {
			v = max(v, uint32(old)+1)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return 0, err
	}
	if err := writeFile(filepath.Join(dir, validityFile), []byte(strconv.FormatUint(uint64(v), 10)+"\n"), dir); err != nil {
		return 0, err
	}
	return v, nil
}

// readBounded reads at most max octets of a file.
func readBounded(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, max))
}

// The flags a client may set; others are dropped (PERMANENTFLAGS says so).
var permanentFlags = []imap.Flag{imap.FlagSeen, imap.FlagFlagged, imap.FlagDeleted, imap.FlagAnswered, imap.FlagDraft}

func canonical(f imap.Flag) (imap.Flag, bool) {
	for _, p := range permanentFlags {
		if equalFold(string(p), string(f)) {
			return p, true
		}
	}
	return "", false
}

func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

func (r *record) has(f imap.Flag) bool { return slices.Contains(r.Flags, string(f)) }

func (r *record) flags() []imap.Flag {
	out := make([]imap.Flag, 0, len(r.Flags))
	for _, f := range r.Flags {
		out = append(out, imap.Flag(f))
	}
	return out
}

// apply changes a record's flags as STORE asks; it reports a change.
func (r *record) apply(op imap.StoreFlagsOp, flags []imap.Flag) bool {
	set := map[imap.Flag]bool{}
	for _, f := range flags {
		if c, ok := canonical(f); ok {
			set[c] = true
		}
	}
	old := slices.Clone(r.Flags)
	var out []string
	for _, p := range permanentFlags {
		have := r.has(p)
		switch op {
		case imap.StoreFlagsSet:
			have = set[p]
		case imap.StoreFlagsAdd:
			have = have || set[p]
		case imap.StoreFlagsDel:
			have = have && !set[p]
		}
		if have {
			out = append(out, string(p))
		}
	}
	r.Flags = out
	return !slices.Equal(old, out)
}

// find returns the record of uid, or nil.
func (s *mboxState) find(uid imap.UID) *record {
	i, ok := slices.BinarySearchFunc(s.Msgs, uid, func(r record, u imap.UID) int {
		return int(int64(r.UID) - int64(u))
	})
	if !ok {
		return nil
	}
	return &s.Msgs[i]
}

// durableWrites is false only in the fuzz test, which checks framing and
// the state's logic, not crash safety, and would spend its time in fsync.
var durableWrites = true

// writeFile replaces path with data: tmp -> fsync -> rename -> fsync(dir).
func writeFile(path string, data []byte, dir string) error {
	if durableWrites {
		return durable.WriteFile(path, data, 0o600, dir)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
