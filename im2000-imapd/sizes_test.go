package main

// The sizes journal (sizes.go): a size recorded in O(1), merged on every
// read, folded into imap.state when it is rewritten, first recorded wins,
// a torn line ignored, a line of another UIDVALIDITY never applied.

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
)

// journalState makes a state of three messages in dir.
func journalState(t *testing.T) (string, *mboxState) {
	t.Helper()
	durableWrites = false
	dir := t.TempDir()
	s, _, err := lockedUpdate(dir, func(s *mboxState) (bool, error) {
		for i := 1; i <= 3; i++ {
			s.Msgs = append(s.Msgs, record{UID: imap.UID(i), Name: "m" + strconv.Itoa(i), Size: 100, Date: 1})
		}
		s.UIDNext = 4
		return true, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return dir, s
}

func recordSizeAt(t *testing.T, dir string, v uint32, uid imap.UID, name string, n int64) int64 {
	t.Helper()
	lock, err := lockUser(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	// A view that read the state file, none of the journal.
	size, _, _, _, err := appendSize(dir, v, &viewMsg{uid: uid, name: name}, n, stamp{file: currentStamp(dir).file})
	if err != nil {
		t.Fatal(err)
	}
	return size
}

func exactSize(t *testing.T, dir string, uid imap.UID) (int64, bool) {
	t.Helper()
	s, _, err := readState(dir)
	if err != nil {
		t.Fatal(err)
	}
	r := s.find(uid)
	return r.Size, r.Exact
}

func TestSizesJournal(t *testing.T) {
	dir, s := journalState(t)
	file := currentStamp(dir).file
	if got := recordSizeAt(t, dir, s.UIDValidity, 1, "m1", 123); got != 123 {
		t.Errorf("first size recorded: %d, want 123", got)
	}
	if currentStamp(dir).file != file {
		t.Error("recording a size rewrote imap.state")
	}
	if n, ok := exactSize(t, dir, 1); n != 123 || !ok {
		t.Errorf("read back: %d %v, want 123 exact", n, ok)
	}
	// First recorded wins, in the journal.
	if got := recordSizeAt(t, dir, s.UIDValidity, 1, "m1", 999); got != 123 {
		t.Errorf("second size for the same message: %d, want the first, 123", got)
	}
	// A line of another UIDVALIDITY (a state begun again), or of
	// another name under the UID, does not apply.
	recordSizeAt(t, dir, s.UIDValidity-1, 2, "m2", 555)
	recordSizeAt(t, dir, s.UIDValidity, 2, "other", 556)
	if n, ok := exactSize(t, dir, 2); ok || n != 100 {
		t.Errorf("a line of another UIDVALIDITY or name applied: %d %v", n, ok)
	}
	// A torn last line is ignored, and cut by the next append.
	f, err := os.OpenFile(filepath.Join(dir, sizesFile), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(strconv.FormatUint(uint64(s.UIDValidity), 10) + " 3 m3 7")
	f.Close()
	if n, ok := exactSize(t, dir, 3); ok {
		t.Errorf("a torn line applied: %d", n)
	}
	recordSizeAt(t, dir, s.UIDValidity, 3, "m3", 300)
	if n, ok := exactSize(t, dir, 3); n != 300 || !ok {
		t.Errorf("the line after a torn one: %d %v, want 300 exact", n, ok)
	}
	raw, _ := os.ReadFile(filepath.Join(dir, sizesFile))
	if strings.Contains(string(raw), " m3 7") {
		t.Errorf("the torn line was not cut:\n%s", raw)
	}
	// A rewrite of the state folds the journal in and empties it.
	if _, _, err := lockedUpdate(dir, func(s *mboxState) (bool, error) {
		s.Msgs[1].Flags = []string{`\Seen`}
		return true, nil
	}); err != nil {
		t.Fatal(err)
	}
	if journalSize(dir) != 0 {
		t.Error("the journal was not emptied by the rewrite")
	}
	s2, _, err := readStateFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	if r := s2.find(1); r.Size != 123 || !r.Exact {
		t.Errorf("imap.state after the fold: %+v, want size 123 exact", *r)
	}
	if r := s2.find(3); r.Size != 300 || !r.Exact {
		t.Errorf("imap.state after the fold: %+v, want size 300 exact", *r)
	}
	// Folded for good: a later line does not change it.
	recordSizeAt(t, dir, s.UIDValidity, 1, "m1", 1)
	if n, _ := exactSize(t, dir, 1); n != 123 {
		t.Errorf("a line after the fold changed the size: %d", n)
	}
}

// A state begun again (not parsing: a new UIDVALIDITY) never takes the
// old state's sizes, though its UIDs and names come again.
func TestSizesNewUIDValidity(t *testing.T) {
	dir, s := journalState(t)
	recordSizeAt(t, dir, s.UIDValidity, 1, "m1", 123)
	os.WriteFile(filepath.Join(dir, stateFile), []byte("{"), 0o600)
	s2, _, err := lockedUpdate(dir, func(s *mboxState) (bool, error) {
		s.Msgs = append(s.Msgs, record{UID: 1, Name: "m1", Size: 100, Date: 1})
		s.UIDNext = 2
		return true, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if s2.UIDValidity == s.UIDValidity {
		t.Fatal("no new UIDVALIDITY")
	}
	if n, ok := exactSize(t, dir, 1); ok || n != 100 {
		t.Errorf("the old state's size applied to the new: %d %v", n, ok)
	}
}

// A session sees another's first whole fetch: after a NOOP (sync reads
// the journal's new lines), and in its own first whole fetch of the
// same message (first recorded wins, though it was served otherwise).
func TestSizesOtherSession(t *testing.T) {
	durableWrites = false
	dir := t.TempDir()
	m := &traced{memory: newMemory(), trace: "Received: by here\r\n"}
	a := dialSession(t, testConfig(dir, m, time.Hour))
	b := dialSession(t, testConfig(dir, m, time.Hour))
	a.cmd("a1", "LOGIN bob pw")
	a.cmd("a2", "SELECT INBOX")
	b.cmd("b1", "LOGIN bob pw")
	b.cmd("b2", "SELECT INBOX")
	file := currentStamp(filepath.Join(dir, "bob")).file
	sizeRE := regexp.MustCompile(`RFC822\.SIZE [0-9]+`)
	want1 := "RFC822.SIZE " + strconv.Itoa(len(m.trace)+len(messages[0]))
	if r := a.cmd("a3", "UID FETCH 1 (RFC822.SIZE BODY.PEEK[])"); !strings.Contains(r, want1) {
		t.Fatalf("A's whole fetch: %q, want %q", r, want1)
	}
	if currentStamp(filepath.Join(dir, "bob")).file != file {
		t.Error("A's whole fetch rewrote imap.state")
	}
	b.cmd("b3", "NOOP")
	if r := b.cmd("b4", "UID FETCH 1 (RFC822.SIZE)"); !strings.Contains(r, want1) {
		t.Errorf("B after a NOOP: %q, want %q", r, want1)
	}
	// C's view has not read the line of A's fetch of UID 3 (no command
	// since): its own whole fetch, served with another trace, takes A's.
	c := dialSession(t, testConfig(dir, m, time.Hour))
	c.cmd("c1", "LOGIN bob pw")
	c.cmd("c2", "SELECT INBOX")
	want3 := sizeRE.FindString(a.cmd("a4", "UID FETCH 3 (RFC822.SIZE BODY.PEEK[])"))
	if want3 == "" {
		t.Fatal("A's fetch of UID 3 gave no size")
	}
	os.RemoveAll(filepath.Join(dir, "bob", "cache"))
	m.trace = "Received: by somewhere else entirely\r\n"
	if r := c.cmd("c3", "UID FETCH 3 (BODY.PEEK[] RFC822.SIZE)"); sizeRE.FindString(r) != want3 {
		t.Errorf("C's own first whole fetch: %q, want A's %q", r, want3)
	}
	b.cmd("b5", "NOOP")
	if r := b.cmd("b6", "UID FETCH 3 (RFC822.SIZE)"); sizeRE.FindString(r) != want3 {
		t.Errorf("B after a NOOP: %q, want A's %q", r, want3)
	}
}
