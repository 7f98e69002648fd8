package store

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"im2000/lib/addr"
	"im2000/lib/msgid"
)

// TestRecipientIDs: derived ids open their message at their index through
// one link for the message, and anything else is ErrNoSuch: a flipped
// bit, an index past the envelope, an id made under another store's key,
// and all of them once the message is gone.
func TestRecipientIDs(t *testing.T) {
	s, a := newAccount(t)
	sub := submission(t, "l")
	for i := 0; i < 100; i++ {
		sub.Recipients = append(sub.Recipients, addr.Mailbox{Local: "u" + string(rune('a'+i%26)) + string(rune('a'+i/26)), Domain: "example.net"})
	}
	env, err := inject(t, a, sub, "hello", Limits{})
	if err != nil {
		t.Fatal(err)
	}
	other, err := inject(t, a, submission(t), "other", Limits{})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	seen := map[msgid.ID]bool{}
	for i, r := range env.Recipients {
		if seen[r.ID] || r.ID == env.ID {
			t.Fatalf("recipient %d's id %s repeats", i, r.ID)
		}
		seen[r.ID] = true
		m, j, err := s.Lookup(r.ID, now)
		if err != nil || j != i || m.Env.ID != env.ID {
			t.Fatalf("Lookup(recipient %d) = %d, %v", i, j, err)
		}
		m.Close()
	}
	rcpt, _ := os.ReadDir(filepath.Join(s.Root, "rcpt"))
	if len(rcpt) != 3 { // a locator link per message, one list id's link
		t.Fatalf("rcpt/ holds %d entries for 2 messages and a list id", len(rcpt))
	}
	forged := []msgid.ID{env.ID, other.ID, s.recipientID(env.ID, len(env.Recipients)), s.recipientID(env.ID, -1)}
	flipped := env.Recipients[3].ID
	flipped[15] ^= 1
	forged = append(forged, flipped)
	// The id of this message's recipient 1 under another store's key.
	s2, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	forged = append(forged, s2.recipientID(env.ID, 1))
	for _, id := range forged {
		if _, _, err := s.Lookup(id, now); !errors.Is(err, ErrNoSuch) {
			t.Errorf("Lookup(%s) = %v, want ErrNoSuch", id, err)
		}
	}
	if err := a.Cancel(env.ID); err != nil {
		t.Fatal(err)
	}
	for i, r := range env.Recipients {
		if _, _, err := s.Lookup(r.ID, now); !errors.Is(err, ErrNoSuch) {
			t.Fatalf("recipient %d after Cancel: %v", i, err)
		}
	}
	if m, _, err := s.Lookup(other.Recipients[1].ID, now); err != nil {
		t.Fatalf("the other message after the Cancel: %v", err)
	} else {
		m.Close()
	}
	if tr := traces(t, s, env); len(tr) != 0 {
		t.Fatalf("after Cancel: %v", tr)
	}
}

// TestOldRecipientIDs: a message committed before ids were derived (a
// random id and a link rcpt/<rid> per recipient) still opens by them, and
// a removal takes its links.
func TestOldRecipientIDs(t *testing.T) {
	s, a := newAccount(t)
	d, err := a.NewDraft(submission(t), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	// The envelope as the old NewDraft wrote it.
	for i := range d.env.Recipients {
		d.env.Recipients[i].ID = msgid.New()
	}
	d.w.Reset(d.f)
	d.f.Truncate(0)
	d.f.Seek(0, io.SeekStart)
	d.w.Write(d.env.Marshal())
	io.WriteString(d, "old")
	env, err := d.Commit()
	if err != nil {
		t.Fatal(err)
	}
	if snap, _ := os.ReadFile(a.path("status", env.ID)); !bytes.HasPrefix(snap, []byte("im2000-status 1\nrcpt "+env.Recipients[0].ID.String())) {
		t.Fatalf("snapshot of ids not derived:\n%s", snap)
	}
	if st, err := a.Status(env.ID); err != nil || st.Recipients[1].ID != env.Recipients[1].ID {
		t.Fatalf("status: %v", err)
	}
	for i, r := range env.Recipients {
		if _, err := os.Lstat(s.rcptPath(r.ID)); err != nil {
			t.Fatalf("recipient %d: %v", i, err)
		}
		m, j, err := s.Lookup(r.ID, time.Now())
		if err != nil || j != i {
			t.Fatalf("Lookup(old recipient %d) = %d, %v", i, j, err)
		}
		if b, _ := io.ReadAll(m.Body()); string(b) != "old" {
			t.Fatalf("body %q", b)
		}
		m.Close()
	}
	if err := a.Cancel(env.ID); err != nil {
		t.Fatal(err)
	}
	if tr := traces(t, s, env); len(tr) != 0 {
		t.Fatalf("after Cancel: %v", tr)
	}
}

// TestSnapshotRuns: the commit's snapshot is one "rcpts" line for every
// recipient, whatever their number; a compaction writes runs of the same
// state; and readers get every recipient's id, the envelope's.
func TestSnapshotRuns(t *testing.T) {
	_, a := newAccount(t)
	env, err := inject(t, a, manyRecipients(t, 100), "x", Limits{})
	if err != nil {
		t.Fatal(err)
	}
	snap, _ := os.ReadFile(a.path("status", env.ID))
	if want := "im2000-status 2\nrcpts 100 unprocessed unread pinned 0 0 0\n"; string(snap) != want {
		t.Fatalf("snapshot at commit:\n%s", snap)
	}
	check := func(when string, silenced int) {
		t.Helper()
		st, err := a.Status(env.ID)
		if err != nil {
			t.Fatalf("%s: %v", when, err)
		}
		for i, r := range st.Recipients {
			if r.ID != env.Recipients[i].ID || (r.Notification == Silenced) != (i == silenced) {
				t.Fatalf("%s: recipient %d: %+v", when, i, r)
			}
		}
	}
	check("at commit", -1)
	if err := a.Update(env.ID, func(_ *Envelope, st *Status) error {
		st.Recipients[5].Notification = Silenced
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	check("after an update", 5)
	if err := a.Compact(env.ID); err != nil {
		t.Fatal(err)
	}
	snap, _ = os.ReadFile(a.path("status", env.ID))
	if want := "im2000-status 2\njournal 1\nrcpts 5 unprocessed unread pinned 0 0 0\nrcpts 1 silenced unread pinned 0 0 0\nrcpts 94 unprocessed unread pinned 0 0 0\n"; string(snap) != want {
		t.Fatalf("snapshot after a compaction:\n%s", snap)
	}
	check("after a compaction", 5)
	// Another process's Update reads the snapshot afresh (no cache).
	cached.Lock()
	cached.hasState = false
	cached.Unlock()
	if err := a.Update(env.ID, func(e *Envelope, st *Status) error {
		if st.Recipients[99].ID != e.Recipients[99].ID {
			t.Errorf("Update sees recipient 99 as %s", st.Recipients[99].ID)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

func TestParseStatusRuns(t *testing.T) {
	for _, bad := range []string{
		"im2000-status 1\nrcpts 2 unprocessed unread pinned 0 0 0\n", // not version 1's
		"im2000-status 2\nrcpts 0 unprocessed unread pinned 0 0 0\n",
		"im2000-status 2\nrcpts 1048577 unprocessed unread pinned 0 0 0\n",
		"im2000-status 2\nrcpts 1048576 unprocessed unread pinned 0 0 0\nrcpts 1 unprocessed unread pinned 0 0 0\n",
		"im2000-status 2\nrcpts 2 unprocessed unread pinned 0 0\n",
		"im2000-status 2\nlist 0123456789abcdef0123456789abcdef 0\nrcpts 1 unprocessed unread pinned 0 0 0\n",
	} {
		if _, err := ParseStatus([]byte(bad)); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
	st, err := ParseStatus([]byte("im2000-status 2\nrcpt 0123456789abcdef0123456789abcdef silenced readall unpinned 1 5 0\nrcpts 3 notifying unread pinned 2 7 9\n"))
	if err != nil || len(st.Recipients) != 4 || len(st.derive) != 1 || st.derive[0] != [2]int{1, 3} || st.Recipients[3].Attempts != 2 {
		t.Fatalf("%+v, %v", st, err)
	}
}
