package store

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// Regression tests for the issue 17 review's list-day glob: a removal
// globbed the submission's list day and the next, once per list, so
// reaping a busy list day cost O(N^2). The snapshot now keeps the time the
// commit named the entries by, and a removal unlinks each by name.

// movePosted renames the message's list entries and its snapshot's posted
// line as if the commit had named them by t: where the glob of the
// submission's day and the next would not look.
func movePosted(t *testing.T, s *Store, a *Account, env *Envelope, t0 time.Time) {
	t.Helper()
	snap := a.path("status", env.ID)
	b, err := os.ReadFile(snap)
	if err != nil {
		t.Fatal(err)
	}
	st, err := ParseStatus(b)
	if err != nil || st.posted == 0 {
		t.Fatalf("snapshot of a list message without its entries' time (%v):\n%s", err, b)
	}
	was := time.Unix(st.posted, 0)
	for _, l := range env.Lists {
		if err := s.makeListDay(l.Name, t0); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(s.listEntry(l.Name, was, l.ID), s.listEntry(l.Name, t0, l.ID)); err != nil {
			t.Fatal(err)
		}
	}
	b = bytes.Replace(b, []byte("posted "+strconv.FormatInt(st.posted, 10)+"\n"), []byte("posted "+strconv.FormatInt(t0.Unix(), 10)+"\n"), 1)
	if err := os.WriteFile(snap, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestListEntryRemovedByName: a removal finds the list entries by the
// time the snapshot keeps, without reading the list days.
func TestListEntryRemovedByName(t *testing.T) {
	s, a := newAccount(t)
	env, err := inject(t, a, submission(t, "news", "tech"), "by name", Limits{})
	if err != nil {
		t.Fatal(err)
	}
	movePosted(t, s, a, env, env.Submitted.Add(72*time.Hour))
	if err := a.Cancel(env.ID); err != nil {
		t.Fatal(err)
	}
	if tr := traces(t, s, env); len(tr) != 0 {
		t.Fatalf("left after cancel: %v", tr)
	}
}

// TestListEntryOldSnapshot: a message committed before the snapshot kept
// the time still has its entries found, by the glob.
func TestListEntryOldSnapshot(t *testing.T) {
	s, a := newAccount(t)
	env, err := inject(t, a, submission(t, "news"), "old", Limits{})
	if err != nil {
		t.Fatal(err)
	}
	snap := a.path("status", env.ID)
	b, err := os.ReadFile(snap)
	if err != nil {
		t.Fatal(err)
	}
	st, err := ParseStatus(b)
	if err != nil {
		t.Fatal(err)
	}
	st.posted = 0
	if err := os.WriteFile(snap, st.Marshal(), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := a.Cancel(env.ID); err != nil {
		t.Fatal(err)
	}
	if tr := traces(t, s, env); len(tr) != 0 {
		t.Fatalf("left after cancel: %v", tr)
	}
}

// TestPostedSurvivesCompaction: the time stays in the snapshot through a
// compaction, and is not written for a message without lists.
func TestPostedSurvivesCompaction(t *testing.T) {
	s, a := newAccount(t)
	env, err := inject(t, a, submission(t, "news"), "kept", Limits{})
	if err != nil {
		t.Fatal(err)
	}
	plain, err := inject(t, a, submission(t), "no lists", Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(a.path("status", plain.ID)); bytes.Contains(b, []byte("posted")) {
		t.Errorf("a message without lists keeps a posted time:\n%s", b)
	}
	if err := a.Update(env.ID, func(_ *Envelope, st *Status) error { st.Recipients[0].Read = ReadAll; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := a.Compact(env.ID); err != nil {
		t.Fatal(err)
	}
	movePosted(t, s, a, env, env.Submitted.Add(72*time.Hour))
	if err := a.Cancel(env.ID); err != nil {
		t.Fatal(err)
	}
	if tr := traces(t, s, env); len(tr) != 0 {
		t.Fatalf("left after compaction and cancel: %v", tr)
	}
	if _, err := os.Stat(filepath.Join(s.Root, "lists", "news")); err != nil {
		t.Fatal(err)
	}
}
