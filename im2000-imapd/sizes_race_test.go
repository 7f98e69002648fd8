package main

// The sizes journal against concurrent sessions and a hostile directory:
// a reader never pairs a new state with the old journal (the fold renames
// the state, then empties the journal: readers take the lock shared), a
// line never straddles the bound a read stops at, and the journal is
// never a link or a FIFO.

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
)

// foldWithReader does what lockedChange does for a flag change (rename
// the new state, which holds the journal's sizes, then empty the journal)
// under the exclusive lock, with another session's readState started
// between the two; it returns what that session read.
func foldWithReader(t *testing.T, dir string) (*mboxState, stamp) {
	t.Helper()
	s, _, err := readState(dir)
	if err != nil {
		t.Fatal(err)
	}
	s.Msgs[2].Flags = append(s.Msgs[2].Flags, "\\Flagged")
	lock, err := lockUser(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := writeFile(filepath.Join(dir, stateFile), []byte(mustJSON(t, s)), dir); err != nil {
		t.Fatal(err)
	}
	type read struct {
		s   *mboxState
		st  stamp
		err error
	}
	got := make(chan read, 1)
	go func() {
		s, st, err := readState(dir)
		got <- read{s, st, err}
	}()
	// Time for a reader that does not wait for the lock to read in the
	// window; one that waits reads after it, whatever the time.
	time.Sleep(50 * time.Millisecond)
	if err := truncateSizes(dir); err != nil {
		t.Fatal(err)
	}
	lock.Close()
	r := <-got
	if r.err != nil {
		t.Fatal(r.err)
	}
	return r.s, r.st
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

func sessionOf(dir string, v uint32, st *mboxState, seen stamp) *imapSession {
	s := &imapSession{dir: dir, validity: v, seen: seen, selected: true}
	for _, r := range st.Msgs {
		s.view = append(s.view, &viewMsg{uid: r.UID, name: r.Name, size: r.Size, exact: r.Exact})
	}
	return s
}

// A session that read between the rename and the truncation, the journal
// then grown back to the length it saw: it must still see the other
// session's size, and tell its client that one.
func TestSizesFoldWindowSameLength(t *testing.T) {
	dir, s0 := journalState(t)
	v := s0.UIDValidity
	recordSizeAt(t, dir, v, 1, "m1", 111)
	st, seen := foldWithReader(t, dir)
	recordSizeAt(t, dir, v, 2, "m2", 222) // a session of the new state
	S := sessionOf(dir, v, st, seen)
	if err := S.sync(nil, false); err != nil {
		t.Fatal(err)
	}
	m2 := S.view[1]
	if !m2.exact {
		S.recordSize(m2, 999) // its client fetches m2, with another trace
	}
	if n, _ := exactSize(t, dir, 2); m2.size != n || n != 222 {
		t.Errorf("m2: the session told %d, the state records %d, want 222", m2.size, n)
	}
}

// The same window, the journal grown past the length seen: no read from
// the middle of a line, no second size for a message.
func TestSizesFoldWindowMidLine(t *testing.T) {
	dir, s0 := journalState(t)
	v := s0.UIDValidity
	recordSizeAt(t, dir, v, 1, "m1", 111)
	st, seen := foldWithReader(t, dir)
	recordSizeAt(t, dir, v, 2, "m2", 222)
	recordSizeAt(t, dir, v, 3, "m3", 333)
	S := sessionOf(dir, v, st, seen)
	if err := S.sync(nil, false); err != nil {
		t.Fatal(err)
	}
	for i, m := range S.view[1:] {
		if !m.exact {
			S.recordSize(m, int64(900+i))
		}
		if n, _ := exactSize(t, dir, m.uid); m.size != n || n != int64(111*m.uid) {
			t.Errorf("uid %d: the session told %d, the state records %d", m.uid, m.size, n)
		}
	}
}

// The real functions at once: a readState never returns a stamp whose
// journal length is past the journal of its state file.
func TestSizesFoldWindowRace(t *testing.T) {
	dir, s0 := journalState(t)
	durableWrites = true
	defer func() { durableWrites = false }()
	v := s0.UIDValidity
	var stop atomic.Bool
	var reads, torn int
	done := make(chan bool)
	go func() {
		defer close(done)
		for !stop.Load() {
			st, seen, err := readState(dir)
			if err != nil || st.UIDValidity == 0 {
				continue
			}
			reads++
			if cur := currentStamp(dir); cur.file == seen.file && cur.jsize < seen.jsize {
				torn++
			}
		}
	}()
	end := time.Now().Add(time.Second)
	folds := 0
	for ; time.Now().Before(end); folds++ {
		lock, err := lockUser(dir)
		if err != nil {
			t.Fatal(err)
		}
		appendSize(dir, v, &viewMsg{uid: imap.UID(1 + folds%3), name: "x"}, 1, currentStamp(dir))
		lock.Close()
		if _, _, err := lockedUpdate(dir, func(s *mboxState) (bool, error) {
			s.Msgs[0].Date++
			return true, nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	stop.Store(true)
	<-done
	if torn > 0 {
		t.Errorf("%d of %d reads (%d folds) paired a new state with its old journal", torn, reads, folds)
	}
}

// A line that would take the journal past maxSizesFile (the most a read
// reads) goes to the state instead: it is not lost.
func TestSizesStraddleMax(t *testing.T) {
	dir, s0 := journalState(t)
	v := s0.UIDValidity
	line := "1 4000000000 filler 1\n"
	fill := strings.Repeat(line, (maxSizesFile-5)/len(line))
	if err := os.WriteFile(filepath.Join(dir, sizesFile), []byte(fill), 0o600); err != nil {
		t.Fatal(err)
	}
	S := &imapSession{dir: dir, validity: v, seen: currentStamp(dir)}
	m1 := &viewMsg{uid: 1, name: "m1"}
	S.recordSize(m1, 123)
	if n, ok := exactSize(t, dir, 1); !ok || n != 123 || m1.size != 123 {
		t.Errorf("m1: told %d, recorded %d (exact %v), want 123", m1.size, n, ok)
	}
	// Another session, its view read now, fetches m1 again.
	st, seen, err := readState(dir)
	if err != nil {
		t.Fatal(err)
	}
	S2 := sessionOf(dir, v, st, seen)
	if m1 = S2.view[0]; !m1.exact {
		S2.recordSize(m1, 999)
	}
	if m1.size != 123 {
		t.Errorf("m1 now %d, its client was told 123", m1.size)
	}
}

// sizes a symbolic link or a FIFO: refused, never followed (a fold would
// empty the file it names, an append write to it) nor waited on.
func TestSizesNotAFile(t *testing.T) {
	dir, s0 := journalState(t)
	victim := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(victim, []byte("precious\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, filepath.Join(dir, sizesFile)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := lockedUpdate(dir, func(s *mboxState) (bool, error) { s.Msgs[0].Date++; return true, nil }); err == nil {
		t.Error("a fold over a link: no error")
	}
	lock, err := lockUser(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, _, _, _, err = appendSize(dir, s0.UIDValidity, &viewMsg{uid: 1, name: "m1"}, 5, currentStamp(dir))
	lock.Close()
	if err == nil {
		t.Error("an append through a link: no error")
	}
	if b, _ := os.ReadFile(victim); string(b) != "precious\n" {
		t.Errorf("the file the link names is now %q", b)
	}

	os.Remove(filepath.Join(dir, sizesFile))
	if err := syscall.Mkfifo(filepath.Join(dir, sizesFile), 0o600); err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() { _, _, err := readState(dir); got <- err }()
	select {
	case err := <-got:
		if err == nil {
			t.Error("a FIFO for a journal: no error")
		}
	case <-time.After(10 * time.Second): // a guard, not a measure
		t.Fatal("readState waits on a FIFO")
	}
}
