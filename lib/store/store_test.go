package store

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"im2000/lib/addr"
	"im2000/lib/mailmsg"
	"im2000/lib/msgid"
)

func mustAddr(t testing.TB, s string) addr.Mailbox {
	a, err := addr.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func newAccount(t testing.TB) (*Store, *Account) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	a, err := s.Account("alice")
	if err != nil {
		t.Fatal(err)
	}
	return s, a
}

func submission(t testing.TB, lists ...string) Submission {
	return Submission{
		Sender:     mustAddr(t, "alice@example.org"),
		Lifetime:   24 * time.Hour,
		Recipients: []addr.Mailbox{mustAddr(t, "bob@example.net"), mustAddr(t, "carol@example.com")},
		Lists:      lists,
	}
}

func inject(t testing.TB, a *Account, sub Submission, body string, lim Limits) (*Envelope, error) {
	d, err := a.NewDraft(sub, lim)
	if err != nil {
		return nil, err
	}
	if _, err := io.WriteString(d, body); err != nil {
		d.Abort()
		return nil, err
	}
	return d.Commit()
}

// entries lists every name below dir, for "nothing left behind" checks.
func entries(t testing.TB, dir string) []string {
	var out []string
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	return out
}

func TestCommitAndRead(t *testing.T) {
	s, a := newAccount(t)
	body := "Subject: hi\r\n\r\nhello\r\n"
	env, err := inject(t, a, submission(t, "golang"), body, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	m, err := a.Open(env.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	got, _ := io.ReadAll(m.Body())
	if string(got) != body || m.Size() != int64(len(body)) {
		t.Fatalf("body = %q (size %d)", got, m.Size())
	}
	if m.Env.Sender.String() != "alice@example.org" || len(m.Env.Recipients) != 2 || len(m.Env.Lists) != 1 {
		t.Fatalf("envelope = %+v", m.Env)
	}
	st, err := a.Status(env.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Recipients) != 2 || st.Recipients[0].Notification != Unprocessed || !st.Recipients[0].Pinned || st.Recipients[1].ID != env.Recipients[1].ID {
		t.Fatalf("status = %+v", st)
	}
	todo, _ := a.Todo()
	if len(todo) != 1 || todo[0] != env.ID {
		t.Fatalf("todo = %v", todo)
	}
	for i, r := range env.Recipients {
		if _, err := os.Lstat(s.rcptPath(r.ID)); err == nil {
			t.Errorf("recipient %d has a link of its own", i)
		}
		m, j, err := s.Lookup(r.ID, time.Now())
		if err != nil || j != i || m.Env.ID != env.ID {
			t.Fatalf("Lookup(recipient %d) = %d, %v", i, j, err)
		}
		m.Close()
	}
	if fi, err := os.Stat(s.locatorPath(env.ID)); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("locator link: %v", err)
	}
	l, err := s.ScanList("golang", env.Submitted, time.Now().Add(time.Minute))
	if err != nil || len(l) != 1 || l[0].ID != env.Lists[0].ID {
		t.Fatalf("ScanList = %v, %v", l, err)
	}
	if l, _ := s.ScanList("golang", l[0].Submitted.Add(time.Second), time.Now().Add(time.Minute)); len(l) != 0 {
		t.Fatalf("ScanList after the post = %v", l)
	}
	if l, _ := s.ScanList("other", time.Time{}, time.Now().Add(time.Minute)); len(l) != 0 {
		t.Fatalf("ScanList of another list = %v", l)
	}
	ids, _ := a.Messages()
	if len(ids) != 1 || ids[0] != env.ID {
		t.Fatalf("Messages = %v", ids)
	}
	if err := a.Done(env.ID); err != nil {
		t.Fatal(err)
	}
	if todo, _ := a.Todo(); len(todo) != 0 {
		t.Fatalf("todo after Done = %v", todo)
	}
	if _, err := a.Open(msgid.New()); !errors.Is(err, ErrNoSuch) {
		t.Fatalf("Open(unknown) = %v", err)
	}
}

func TestLimitsLeaveNothing(t *testing.T) {
	s, a := newAccount(t)
	if _, err := inject(t, a, submission(t, "l"), "0123456789", Limits{MaxMessage: 9}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("over size limit: %v", err)
	}
	if _, err := inject(t, a, submission(t), "0123456789", Limits{MaxMessage: 10}); err != nil {
		t.Fatalf("at size limit: %v", err)
	}
	before := entries(t, s.Root)
	used, _ := a.Usage()
	if _, err := inject(t, a, submission(t, "l"), "0123456789", Limits{Quota: used + 5}); !errors.Is(err, ErrQuota) {
		t.Fatalf("over quota: %v", err)
	}
	if after := entries(t, s.Root); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("failed submissions left files:\nbefore %v\nafter  %v", before, after)
	}
	if _, err := a.NewDraft(Submission{Sender: mustAddr(t, "a@b"), Lifetime: time.Hour}, Limits{}); !errors.Is(err, ErrNoRecipients) {
		t.Fatalf("no recipients: %v", err)
	}
	if _, err := a.NewDraft(submission(t, "Bad/Name"), Limits{}); err == nil {
		t.Fatal("bad list name accepted")
	}
}

// TestCleanDebris lays down everything a commit makes except the commit
// itself, as a crash just before the rename would leave it, and checks that
// readers do not see it and Clean removes it once stale, and only it.
func TestCleanDebris(t *testing.T) {
	s, a := newAccount(t)
	kept, err := inject(t, a, submission(t, "l"), "kept", Limits{})
	if err != nil {
		t.Fatal(err)
	}
	before := entries(t, s.Root)

	d, err := a.NewDraft(submission(t, "l"), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(d, "lost")
	d.w.Flush()
	if err := a.s.makeListDay("l", d.env.Submitted); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(a.path("status", d.env.ID), initialStatus(d.env).Marshal(), 0o600)
	for _, e := range d.entries() {
		if err := os.Symlink(e.target, e.link); err != nil {
			t.Fatal(err)
		}
	}
	d.f.Close() // the crash: the file stays in tmp/

	if ids, _ := a.Messages(); len(ids) != 1 || ids[0] != kept.ID {
		t.Fatalf("Messages sees debris: %v", ids)
	}
	if todo, _ := a.Todo(); len(todo) != 1 {
		t.Fatalf("Todo sees debris: %v", todo)
	}
	if l, _ := s.ScanList("l", time.Time{}, time.Now().Add(time.Minute)); len(l) != 1 || l[0].ID != kept.Lists[0].ID {
		t.Fatalf("ScanList sees debris: %v", l)
	}
	if err := s.Clean(time.Now()); err != nil {
		t.Fatal(err)
	}
	if n := len(entries(t, s.Root)); n == len(before) {
		t.Fatal("Clean removed fresh entries that may belong to a live writer")
	}
	if err := s.Clean(time.Now().Add(StaleAge + time.Minute)); err != nil {
		t.Fatal(err)
	}
	if after := entries(t, s.Root); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("Clean left debris or took too much:\nbefore %v\nafter  %v", before, after)
	}
	if m, err := a.Open(kept.ID); err != nil {
		t.Fatalf("committed message gone after Clean: %v", err)
	} else {
		m.Close()
	}
}

func TestEnvelopeRoundTrip(t *testing.T) {
	_, a := newAccount(t)
	d, err := a.NewDraft(submission(t, "a", "b.c"), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Abort()
	text := d.env.Marshal()
	back, n, err := ReadEnvelope(bufio.NewReader(bytes.NewReader(append(text, "body"...))))
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(len(text)) || !bytes.Equal(back.Marshal(), text) {
		t.Fatalf("round trip:\n%s\n%s", text, back.Marshal())
	}
}

func TestLookupPartsCancel(t *testing.T) {
	s, a := newAccount(t)
	body := "From: alice@example.org\r\nX-Long: one\r\n two\r\nTo: bob@example.net\r\nSubject: hi\r\n  there\r\nReceived: x\r\n\r\nbody\r\n"
	env, err := inject(t, a, submission(t, "news"), body, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	m, i, err := s.Lookup(env.Recipients[1].ID, now)
	if err != nil || i != 1 || m.Env.ID != env.ID || m.Account != "alice" {
		t.Fatalf("Lookup = %v, %d, %v", m, i, err)
	}
	h, err := m.Header()
	if err != nil || string(h) != body[:strings.Index(body, "\r\n\r\n")+2] {
		t.Fatalf("Header = %q, %v", h, err)
	}
	if got := string(mailmsg.Summary(h)); got != "From: alice@example.org\r\nTo: bob@example.net\r\nSubject: hi\r\n  there\r\n" {
		t.Fatalf("Summary = %q", got)
	}
	if err := m.Update(func(_ *Envelope, st *Status) error { st.Recipients[1].Read = ReadAll; return nil }); err != nil {
		t.Fatal(err)
	}
	m.Close()
	if st, _ := a.Status(env.ID); st.Recipients[1].Read != ReadAll || st.Recipients[0].Read != Unread {
		t.Fatalf("status after Update = %+v", st)
	}
	if _, i, err := s.Lookup(env.Lists[0].ID, now); err != nil || i != 2 {
		t.Fatalf("Lookup(list id) = %d, %v", i, err)
	}
	if _, _, err := s.Lookup(env.ID, now); !errors.Is(err, ErrNoSuch) {
		t.Fatalf("the message's own id is no capability: %v", err)
	}
	if _, _, err := s.Lookup(env.Recipients[0].ID, env.Expires().Add(time.Second)); !errors.Is(err, ErrNoSuch) {
		t.Fatalf("expired: %v", err)
	}
	// A forged link: an id of our choosing pointing at the message.
	forged := msgid.New()
	os.Symlink(filepath.Join("..", "alice", "msg", env.ID.String()), s.rcptPath(forged))
	if _, _, err := s.Lookup(forged, now); !errors.Is(err, ErrNoSuch) {
		t.Fatalf("forged link: %v", err)
	}
	// ScanList's end bound, and cancel.
	if l, _ := s.ScanList("news", time.Time{}, time.Now().Add(-time.Hour)); len(l) != 0 {
		t.Fatalf("entries before end: %v", l)
	}
	if err := a.Cancel(env.ID); err != nil {
		t.Fatal(err)
	}
	for _, id := range []msgid.ID{env.Recipients[0].ID, env.Lists[0].ID} {
		if _, _, err := s.Lookup(id, now); !errors.Is(err, ErrNoSuch) {
			t.Fatalf("after Cancel: %v", err)
		}
	}
	if l, _ := s.ScanList("news", time.Time{}, time.Now().Add(time.Minute)); len(l) != 0 {
		t.Fatalf("cancelled message still listed: %v", l)
	}
	if todo, _ := a.Todo(); len(todo) != 0 {
		t.Fatalf("cancelled message still queued: %v", todo)
	}
	if err := a.Cancel(env.ID); !errors.Is(err, ErrNoSuch) {
		t.Fatalf("second Cancel: %v", err)
	}
}

func TestCountRead(t *testing.T) {
	s, a := newAccount(t)
	env, err := inject(t, a, submission(t, "news", "other"), "x", Limits{})
	if err != nil {
		t.Fatal(err)
	}
	m, i, err := s.Lookup(env.Lists[1].ID, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	day := time.Unix(1_800_000_000, 0)
	// Three addresses count three; the same address again, or another in
	// the same IPv6 /64, the same day, counts nothing more.
	for _, from := range []string{"192.0.2.1", "2001:db8::1", "192.0.2.2", "192.0.2.1", "::ffff:192.0.2.2", "2001:db8::ffff:1"} {
		if err := m.CountRead(i-len(env.Recipients), netip.MustParseAddr(from), day); err != nil {
			t.Fatal(err)
		}
	}
	st, _ := a.Status(env.ID)
	if st.Lists[0].Retrievals != 0 || st.Lists[1].Retrievals != 3 {
		t.Fatalf("retrievals %+v", st.Lists)
	}
	// The next day counts them again; a flood of addresses in one day
	// counts MaxListReadsPerDay at most, and the file stays that small.
	next := day.Add(24 * time.Hour)
	m.CountRead(i-len(env.Recipients), netip.MustParseAddr("192.0.2.1"), next)
	for n := range MaxListReadsPerDay + 500 {
		m.CountRead(i-len(env.Recipients), netip.AddrFrom4([4]byte{10, byte(n >> 16), byte(n >> 8), byte(n)}), next)
	}
	m.Close()
	st, _ = a.Status(env.ID)
	if st.Lists[1].Retrievals != 3+MaxListReadsPerDay {
		t.Fatalf("after a flood: %d retrievals, want %d", st.Lists[1].Retrievals, 3+MaxListReadsPerDay)
	}
	if fi, _ := os.Stat(a.readsPath(env.ID, env.Lists[1].ID)); fi.Size() > int64(readsHeader+8*MaxListReadsPerDay) {
		t.Fatalf("the counter grew to %d octets", fi.Size())
	}
	// An older counter (an octet per retrieval) keeps its total.
	os.WriteFile(a.readsPath(env.ID, env.Lists[0].ID), []byte{1, 1, 1, 1, 1}, 0o600)
	m, i, _ = s.Lookup(env.Lists[0].ID, time.Now())
	m.CountRead(i-len(env.Recipients), netip.MustParseAddr("192.0.2.1"), day)
	m.Close()
	if st, _ = a.Status(env.ID); st.Lists[0].Retrievals != 6 {
		t.Fatalf("an older counter: %d, want 6", st.Lists[0].Retrievals)
	}
	st.Lists[1].Retrievals = 3
	// Clean keeps the counter of a live message, and Cancel removes it.
	if err := s.Clean(time.Now().Add(2 * StaleAge)); err != nil {
		t.Fatal(err)
	}
	if st, _ := a.Status(env.ID); st.Lists[1].Retrievals != 3+MaxListReadsPerDay {
		t.Fatal("Clean took a live message's read counter")
	}
	a.Cancel(env.ID)
	if ents, _ := os.ReadDir(filepath.Join(s.Root, "alice", "status")); len(ents) != 0 {
		t.Fatalf("Cancel left %v", ents)
	}
}
