package remote

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"im2000/lib/conf"
	"im2000/lib/msgid"
)

// TestSentLogAccounts: each line names its account; an account reads its
// own lines and the old ones (no account: the owner's), not another's.
func TestSentLogAccounts(t *testing.T) {
	log := filepath.Join(t.TempDir(), "sent")
	old := msgid.New()
	if err := os.WriteFile(log, []byte(old.String()+" 1700000000 before accounts\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1800000000, 0)
	a1, b1, a2 := msgid.New(), msgid.New(), msgid.New()
	for _, s := range []Sent{
		{ID: a1, Submitted: now, Account: "alice", Subject: "tab\there, CR LF\r\n folded"},
		{ID: b1, Submitted: now, Account: "bob", Subject: "bob's"},
		{ID: a2, Submitted: now, Account: "alice", Subject: strings.Repeat("é", 600)},
	} {
		if err := Record(log, s); err != nil {
			t.Fatal(err)
		}
	}
	alice, err := ReadLog(log, "alice", time.Time{})
	if err != nil || len(alice) != 3 {
		t.Fatalf("alice's lines: %v %+v", err, alice)
	}
	if alice[0].ID != old || alice[0].Account != "" || alice[0].Subject != "before accounts" || alice[0].Submitted.Unix() != 1700000000 {
		t.Errorf("old line: %+v", alice[0])
	}
	if alice[1].ID != a1 || alice[1].Subject != "tab here, CR LF   folded" || !alice[1].Submitted.Equal(now) {
		t.Errorf("alice's first: %+v", alice[1])
	}
	if s := alice[2].Subject; len(s) != 998 || !strings.HasSuffix(s, "é") {
		t.Errorf("a long subject is kept as %d octets, %q at its end", len(s), s[len(s)-3:])
	}
	bob, _ := ReadLog(log, "bob", time.Time{})
	if len(bob) != 2 || bob[1].ID != b1 || bob[1].Account != "bob" {
		t.Errorf("bob's lines: %+v", bob)
	}
	if carol, _ := ReadLog(log, "carol", time.Time{}); len(carol) != 1 {
		t.Errorf("carol's lines: %+v", carol)
	}
	if err := Record(log, Sent{ID: a1, Submitted: now, Account: "../x"}); err == nil {
		t.Error("a line for an account that is no name")
	}
	if fi, _ := os.Stat(log); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", fi.Mode())
	}
}

// TestSentLogTorn: a line a crash left without its LF costs that line
// only; an overlong one is skipped.
func TestSentLogTorn(t *testing.T) {
	log := filepath.Join(t.TempDir(), "sent")
	id, id2 := msgid.New(), msgid.New()
	torn := id2.String() + "\t1800000000\tali"
	junk := strings.Repeat("x", 3*maxLine) + "\n"
	if err := os.WriteFile(log, []byte(junk+torn), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Record(log, Sent{ID: id, Submitted: time.Unix(1800000000, 0), Account: "alice"}); err != nil {
		t.Fatal(err)
	}
	if got, err := ReadLog(log, "alice", time.Time{}); err != nil || len(got) != 1 || got[0].ID != id {
		t.Fatalf("after a torn line: %v %+v", err, got)
	}
	if got, err := ReadLog(filepath.Join(t.TempDir(), "none"), "alice", time.Time{}); err != nil || got != nil {
		t.Errorf("a missing log: %v %+v", err, got)
	}
}

// TestSentLogConcurrent: appenders at once (inject and smtpd) never
// interleave a line.
func TestSentLogConcurrent(t *testing.T) {
	log := filepath.Join(t.TempDir(), "sent")
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 50 {
				s := Sent{ID: msgid.New(), Submitted: time.Now(), Account: fmt.Sprintf("user%d", w), Subject: strings.Repeat(fmt.Sprint(i), 300)}
				if err := Record(log, s); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	for w := range 8 {
		if got, err := ReadLog(log, fmt.Sprintf("user%d", w), time.Time{}); err != nil || len(got) != 50 {
			t.Fatalf("user%d: %d lines, %v", w, len(got), err)
		}
	}
}

// TestSentLogPlaceholder: %a in sentlog is the account, which must be a
// name safe in a path.
func TestSentLogPlaceholder(t *testing.T) {
	d := conf.Dir(t.TempDir())
	t.Setenv("HOME", "/home/x")
	if p, err := SentLog(d, "alice"); err != nil || p != "/home/x/.im2000-sent" {
		t.Errorf("default: %q %v", p, err)
	}
	os.WriteFile(d.Path("sentlog"), []byte("/var/spool/im2000-sent/%a\n"), 0o644)
	if p, err := SentLog(d, "alice"); err != nil || p != "/var/spool/im2000-sent/alice" {
		t.Errorf("placeholder: %q %v", p, err)
	}
	for _, bad := range []string{"../etc", ".hidden", "a/b", ""} {
		if p, err := SentLog(d, bad); err == nil {
			t.Errorf("account %q: %q", bad, p)
		}
	}
}

// TestSentLogLifetime: a line records the lifetime asked, in the time
// field, where the reader of the form before it refuses it; lines of both
// older forms read with the lifetime unknown; a lifetime no store keeps is
// left out, not the line.
func TestSentLogLifetime(t *testing.T) {
	log := filepath.Join(t.TempDir(), "sent")
	oldest, older, asked, long := msgid.New(), msgid.New(), msgid.New(), msgid.New()
	lines := oldest.String() + " 1700000000 oldest form\n" + older.String() + "\t1700000001\talice\tolder form\n"
	if err := os.WriteFile(log, []byte(lines), 0o600); err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1800000000, 0)
	for _, s := range []Sent{
		{ID: asked, Submitted: now, Account: "alice", Lifetime: 30 * 24 * time.Hour, Subject: "asked"},
		{ID: long, Submitted: now, Account: "alice", Lifetime: 200 * 365 * 24 * time.Hour, Subject: "too long"},
	} {
		if err := Record(log, s); err != nil {
			t.Fatal(err)
		}
	}
	b, _ := os.ReadFile(log)
	if want := asked.String() + "\t1800000000+2592000\talice\tasked\n"; !strings.Contains(string(b), want) {
		t.Errorf("log %q lacks %q", b, want)
	}
	got, err := ReadLog(log, "alice", time.Time{})
	if err != nil || len(got) != 4 {
		t.Fatalf("%v %+v", err, got)
	}
	for i, want := range []time.Duration{0, 0, 30 * 24 * time.Hour, 0} {
		if got[i].Lifetime != want {
			t.Errorf("line %d (%s): lifetime %v, want %v", i, got[i].Subject, got[i].Lifetime, want)
		}
	}
	if exp := got[2].Expires(); !exp.Equal(now.Add(30 * 24 * time.Hour)) {
		t.Errorf("expires %v", exp)
	}
	if exp := got[0].Expires(); !exp.IsZero() {
		t.Errorf("an oldest-form line expires %v", exp)
	}
	// The reader of the form before: its time field was digits alone.
	if f := strings.Split(strings.Split(string(b), "\n")[2], "\t"); strings.Trim(f[1], "0123456789") == "" {
		t.Errorf("time field %q: the older reader would take it", f[1])
	}
	for _, bad := range []string{"\t1800000000+\talice\tx", "\t1800000000+0\talice\tx", "\t1800000000+-5\talice\tx",
		"\t+5\talice\tx", "\t1800000000+5+5\talice\tx", "\t253402300000+1000\talice\tx", "\t1+3153600001\talice\tx"} {
		if s, ok := parseLine(asked.String() + bad); ok {
			t.Errorf("%q read as %+v", bad, s)
		}
	}
}

// FuzzSentLog: whatever a sent log holds, reading it does not panic, keeps
// only lines that are the reader's, each id once, with a lifetime unknown
// or of whole seconds that no store exceeds and an expiry RFC 3339 can
// print, and each line read writes back as one line that reads the same.
func FuzzSentLog(f *testing.F) {
	id := msgid.New().String()
	f.Add([]byte(id + " 1700000000 old form\n" + id + "\t1800000000\talice\tnew form\n"))
	f.Add([]byte(id + "\t1800000000\tbob\tnot alice's\n" + id + "\t-1\talice\tx\n" + id + "\t1\talice"))
	f.Add([]byte(id + "\t1800000000+2592000\talice\tlifetime\n" + id + " 1700000000+60 old form, no lifetime\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := readLog(bufio.NewReaderSize(bytes.NewReader(b), maxLine), "alice", time.Time{}, false)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) > maxSent {
			t.Fatalf("%d lines, more than %d", len(got), maxSent)
		}
		seen := map[msgid.ID]bool{}
		for _, s := range got {
			if seen[s.ID] {
				t.Fatalf("%s read twice", s.ID)
			}
			seen[s.ID] = true
			if !s.Mine("alice") {
				t.Fatalf("%+v is not alice's", s)
			}
			if s.Lifetime < 0 || s.Lifetime > maxLifetime || s.Lifetime%time.Second != 0 {
				t.Fatalf("%+v: lifetime out of range", s)
			}
			if exp := s.Expires(); s.Lifetime > 0 && (exp.Unix() >= maxUnix || !exp.After(s.Submitted)) || s.Lifetime == 0 && !exp.IsZero() {
				t.Fatalf("%+v expires %v", s, exp)
			}
			if s.Account == "" {
				s.Account = "alice" // the owner's, written as Record would
			}
			l, err := s.line()
			if err != nil || len(l) > maxLine || bytes.IndexByte(l, '\n') != len(l)-1 {
				t.Fatalf("%+v writes as %q: %v", s, l, err)
			}
			again, ok := parseLine(string(l[:len(l)-1]))
			if !ok || again.ID != s.ID || !again.Submitted.Equal(s.Submitted) || again.Account != s.Account || again.Subject != s.Subject || again.Lifetime != s.Lifetime {
				t.Fatalf("%q reads back as %+v, not %+v", l, again, s)
			}
		}
	})
}
