package main

// The sizes journal (imapstate/USER/sizes) records a message's exact size
// (fetch.go: recordSize) in O(1): one line "UIDVALIDITY UID NAME SIZE\n"
// appended and fsynced under the user's lock, where rewriting imap.state
// would cost O(messages) per message, O(messages^2) per pull. readState
// merges it into the state it returns; lockedChange folds it into
// imap.state and truncates it whenever it rewrites the state anyway. The
// first size recorded wins (the state's Exact, then the journal's first
// line). A line carries the UIDVALIDITY and UID: one of a state begun
// again, or of a message gone, names no record and is ignored. A torn
// last line (a crash mid-append) is ignored, and cut off by the next
// append. A line left after a crash between the state's rename and the
// truncation is folded already: it changes nothing.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/emersion/go-imap/v2"

	"golang.org/x/sys/unix"

	"im2000/lib/durable"
	"im2000/lib/fail"
)

const sizesFile = "sizes"

// maxSizesFile bounds the journal: a line that would take it past this
// is recorded by rewriting the state (which empties the journal) instead,
// so that a read of maxSizesFile octets reads every line.
const maxSizesFile = 16 << 20

// sizeLine is one line of the journal.
type sizeLine struct {
	validity uint32
	uid      imap.UID
	name     string
	size     int64
}

// parseSizes returns the whole lines of raw and their length; a torn
// last line and lines that do not parse are left out.
func parseSizes(raw []byte) ([]sizeLine, int64) {
	var out []sizeLine
	whole := int64(0)
	for len(raw) > 0 {
		i := bytes.IndexByte(raw, '\n')
		if i < 0 {
			break // torn: the append did not finish
		}
		f := strings.Fields(string(raw[:i]))
		raw = raw[i+1:]
		whole += int64(i + 1)
		if len(f) != 4 {
			continue
		}
		v, err1 := strconv.ParseUint(f[0], 10, 32)
		u, err2 := strconv.ParseUint(f[1], 10, 32)
		n, err3 := strconv.ParseInt(f[3], 10, 64)
		if err1 != nil || err2 != nil || err3 != nil || n < 0 {
			continue
		}
		out = append(out, sizeLine{uint32(v), imap.UID(u), f[2], n})
	}
	return out, whole
}

// readSizes reads the journal from offset (the start of a line) on; it
// returns its lines and the offset of the end of the last whole line, the
// next read's start. A torn line keeps the stamp's jsize past it, so
// every sync reads that line's few octets again until an append cuts it.
func readSizes(dir string, offset int64) ([]sizeLine, int64, error) {
	f, err := openSizes(dir, os.O_RDONLY)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return nil, 0, err
	}
	raw, err := io.ReadAll(io.LimitReader(f, maxSizesFile))
	if err != nil {
		return nil, 0, err
	}
	lines, whole := parseSizes(raw)
	return lines, offset + whole, nil
}

// mergeSizes applies the journal's lines to the state: first recorded wins.
func (s *mboxState) mergeSizes(lines []sizeLine) {
	for _, l := range lines {
		if l.validity != s.UIDValidity {
			continue
		}
		if r := s.find(l.uid); r != nil && r.Name == l.name && !r.Exact {
			r.Size, r.Exact = l.size, true
		}
	}
}

// openSizes opens the journal itself: never a file a symbolic link left
// in its place names (the journal is truncated and written), nor a FIFO
// or device (O_NONBLOCK: the open does not wait on one; a regular file
// ignores it). Such a thing is refused, for the administrator to remove.
func openSizes(dir string, flag int) (*os.File, error) {
	path := filepath.Join(dir, sizesFile)
	f, err := os.OpenFile(path, flag|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0o600)
	if errors.Is(err, unix.ELOOP) {
		return nil, fmt.Errorf("%s is a symbolic link, not the sizes journal: remove it", path)
	}
	if err != nil {
		return nil, err
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		if err == nil {
			err = fmt.Errorf("%s is not a regular file, not the sizes journal: remove it", path)
		}
		return nil, err
	}
	return f, nil
}

// journalSize is the journal's size now (0 if there is none).
func journalSize(dir string) int64 {
	fi, err := os.Lstat(filepath.Join(dir, sizesFile))
	if err != nil {
		return 0
	}
	return fi.Size()
}

// truncateSizes empties the journal once the state holds its sizes. Not
// fsynced: lines that come back after a crash are folded already.
func truncateSizes(dir string) error {
	f, err := openSizes(dir, os.O_WRONLY)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Truncate(0)
}

// appendSize records size n for message m under validity, unless a size
// is recorded for it already; it returns the size that won, whether the
// line is this one (the journal's size before it and after), and errFold
// when only a rewrite of the state can tell (it changed). The caller
// holds the user's lock. seen is the stamp the session's view follows:
// when the state file is the same, only the lines after seen.jsize are
// read (the view has the others), so the cost does not grow with the
// mailbox. That is sound because seen was taken under the lock (shared
// or exclusive: readState, sync, lockedChange), when the journal was the
// state's: the journal is emptied only with a new state file, so the
// same state file now means the same journal, grown only by appends.
func appendSize(dir string, validity uint32, m *viewMsg, n int64, seen stamp) (size int64, mine bool, from, to int64, err error) {
	cur := currentStamp(dir)
	if cur.file != seen.file || cur.jsize < seen.jsize {
		return 0, false, 0, 0, errFold
	}
	lines, _, err := readSizes(dir, seen.jsize)
	if err != nil {
		return 0, false, 0, 0, err
	}
	for _, l := range lines {
		if l.validity == validity && l.uid == m.uid && l.name == m.name {
			return l.size, false, 0, 0, nil
		}
	}
	_, statErr := os.Lstat(filepath.Join(dir, sizesFile))
	f, err := openSizes(dir, os.O_RDWR|os.O_CREATE)
	if err != nil {
		return 0, false, 0, 0, err
	}
	defer f.Close()
	if err := cutTorn(f); err != nil {
		return 0, false, 0, 0, err
	}
	line := strconv.FormatUint(uint64(validity), 10) + " " + strconv.FormatUint(uint64(m.uid), 10) + " " + m.name + " " + strconv.FormatInt(n, 10) + "\n"
	if from, err = f.Seek(0, io.SeekEnd); err != nil {
		return 0, false, 0, 0, err
	}
	if from+int64(len(line)) > maxSizesFile { // a read would cut it
		return 0, false, 0, 0, errFold
	}
	if _, err := f.WriteString(line); err != nil {
		return 0, false, 0, 0, err
	}
	if durableWrites {
		if err := f.Sync(); err != nil {
			return 0, false, 0, 0, err
		}
		if errors.Is(statErr, fs.ErrNotExist) { // the new name must survive too
			if err := durable.SyncDir(dir); err != nil {
				return 0, false, 0, 0, err
			}
		}
	}
	return n, true, from, from + int64(len(line)), nil
}

// errFold says the journal cannot take the size (the state changed since
// the view's version, or the journal is full): the state is rewritten.
var errFold = errors.New("fold the sizes journal")

// cutTorn cuts a torn last line off the journal, so that the next line
// starts a line of its own.
func cutTorn(f *os.File) error {
	fi, err := f.Stat()
	if err != nil || fi.Size() == 0 {
		return err
	}
	last := make([]byte, 1)
	if _, err := f.ReadAt(last, fi.Size()-1); err != nil {
		return err
	}
	if last[0] == '\n' {
		return nil
	}
	raw, err := io.ReadAll(io.LimitReader(io.NewSectionReader(f, 0, fi.Size()), maxSizesFile+1))
	if err != nil {
		return err
	}
	return f.Truncate(int64(bytes.LastIndexByte(raw, '\n') + 1))
}

// viewSizes applies journal lines to the view (sync: only the state's
// journal changed): first recorded wins.
func (s *imapSession) viewSizes(lines []sizeLine) {
	for _, l := range lines {
		if l.validity != s.validity {
			continue
		}
		i, ok := slices.BinarySearchFunc(s.view, l.uid, func(m *viewMsg, u imap.UID) int {
			return int(int64(m.uid) - int64(u))
		})
		if ok && s.view[i].name == l.name && !s.view[i].exact {
			s.view[i].size, s.view[i].exact = l.size, true
		}
	}
}

// lockUser takes the user's lock, exclusive, for a change of the state
// or the journal; closing the file gives it back.
func lockUser(dir string) (*os.File, error) {
	return takeLock(dir, unix.LOCK_EX)
}

// lockShared takes the user's lock shared, for a read of the state and
// the journal that must see both as one version. No directory (no user
// state yet) is no lock and nothing to read: nil.
func lockShared(dir string) (*os.File, error) {
	lock, err := takeLock(dir, unix.LOCK_SH)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return lock, err
}

func closeLock(lock *os.File) {
	if lock != nil {
		lock.Close()
	}
}

func takeLock(dir string, how int) (*os.File, error) {
	lock, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR|os.O_CREATE|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fail.Temp(err)
	}
	if err := unix.Flock(int(lock.Fd()), how); err != nil {
		lock.Close()
		return nil, fail.Temp(err)
	}
	return lock, nil
}
