package remote

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"im2000/lib/conf"
	"im2000/lib/msgid"
)

// TestSentLogNotAFile: Record refuses a sent log that is a symbolic link
// (to a file or to nothing), a hard link or a FIFO, and leaves what it
// points to as it was: with a shared smtpd the file is its user's to
// replace (review: a link to ~/.bashrc of smtpd's user got lines of her
// choosing). ReadLog refuses a FIFO rather than hang.
func TestSentLogNotAFile(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "profile")
	if err := os.WriteFile(target, []byte("keep\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := Sent{ID: msgid.New(), Submitted: time.Unix(1800000000, 0), Account: "alice", Subject: "x ; echo PWNED"}
	for _, c := range []struct {
		name string
		make func(log string) error
	}{
		{"symlink", func(log string) error { return os.Symlink(target, log) }},
		{"dangling symlink", func(log string) error { return os.Symlink(filepath.Join(dir, "new"), log) }},
		{"hard link", func(log string) error { return os.Link(target, log) }},
		{"fifo", func(log string) error { return syscall.Mkfifo(log, 0o600) }},
	} {
		log := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "-"))
		if err := c.make(log); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- Record(log, s) }()
		select {
		case err := <-done:
			if !errors.Is(err, errNotRegular) {
				t.Errorf("%s: Record: %v, want it refused", c.name, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: Record hangs", c.name)
		}
	}
	if b, _ := os.ReadFile(target); string(b) != "keep\n" {
		t.Errorf("the link's target became %q", b)
	}
	if _, err := os.Lstat(filepath.Join(dir, "new")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the dangling link's target was made: %v", err)
	}
	if _, err := ReadLog(filepath.Join(dir, "fifo"), "alice", time.Time{}); !errors.Is(err, errNotRegular) {
		t.Errorf("ReadLog of a FIFO: %v", err)
	}
}

// TestSentLogOnce: the first line of an id is the one read (a later one
// is a repeat or another's forgery), and lines older than since are not.
func TestSentLogOnce(t *testing.T) {
	log := filepath.Join(t.TempDir(), "sent")
	a1, a2, old := msgid.New(), msgid.New(), msgid.New()
	text := fmt.Sprintf("%s\t1800000000\talice\tfirst\n%s\t1800000001\talice\tforged\n%s\t1800000000\tbob\tbob's\n%s\t1600000000\talice\told\n%s\t1800000002\talice\tsecond\n%s\t1800000003\talice\tagain\n",
		a1, a1, a2, old, a2, a1)
	if err := os.WriteFile(log, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := ReadLog(log, "alice", time.Unix(1700000000, 0))
	if err != nil || len(got) != 2 || got[0].ID != a1 || got[0].Subject != "first" || got[1].ID != a2 || got[1].Subject != "second" {
		t.Errorf("alice's lines: %v %+v", err, got)
	}
	if got, _ := ReadLog(log, "alice", time.Time{}); len(got) != 3 {
		t.Errorf("without a bound: %+v", got)
	}
}

// TestSentLogTail: of a log larger than maxRead only its end is read, a
// line that begins right at the cut included, and at most maxSent lines,
// the newest, are returned.
func TestSentLogTail(t *testing.T) {
	log := filepath.Join(t.TempDir(), "sent")
	f, err := os.Create(log)
	if err != nil {
		t.Fatal(err)
	}
	// Lines of maxLine octets: the last maxRead octets are whole lines.
	var ids []msgid.ID
	for range 2 * maxRead / maxLine {
		id := msgid.New()
		ids = append(ids, id)
		l := fmt.Sprintf("%s\t1800000000\talice\t", id)
		fmt.Fprintf(f, "%s%s\n", l, strings.Repeat("s", maxLine-1-len(l)))
	}
	f.Close()
	got, err := ReadLog(log, "alice", time.Time{})
	if want := ids[len(ids)-maxRead/maxLine:]; err != nil || len(got) != len(want) || got[0].ID != want[0] || got[len(got)-1].ID != ids[len(ids)-1] {
		t.Fatalf("the tail: %v, %d lines", err, len(got))
	}

	// Short lines, more than maxSent in maxRead: the newest maxSent.
	f, _ = os.Create(log)
	ids = ids[:0]
	for range maxSent + 10 {
		id := msgid.New()
		ids = append(ids, id)
		fmt.Fprintf(f, "%s\t1800000000\talice\tx\n", id)
	}
	f.Close()
	if got, _ := ReadLog(log, "alice", time.Time{}); len(got) != maxSent || got[0].ID != ids[10] {
		t.Errorf("%d lines, want the newest %d", len(got), maxSent)
	}
}

// TestSentLogNoHome: without HOME and without sentlog there is no sent
// log (not ./.im2000-sent wherever the program runs).
func TestSentLogNoHome(t *testing.T) {
	d := conf.Dir(t.TempDir())
	t.Setenv("HOME", "")
	if p, err := SentLog(d, "alice"); err == nil || !strings.Contains(err.Error(), "set sentlog") {
		t.Errorf("no HOME, no sentlog: %q %v", p, err)
	}
	os.WriteFile(d.Path("sentlog"), []byte("/var/spool/im2000-sent/%a\n"), 0o644)
	if p, err := SentLog(d, "alice"); err != nil || p != "/var/spool/im2000-sent/alice" {
		t.Errorf("no HOME, sentlog set: %q %v", p, err)
	}
}
