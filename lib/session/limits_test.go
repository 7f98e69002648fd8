package session

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestSlots: n sessions per address, an IPv6 /64 counting as one address,
// a released slot free again, and for FileSlots no file left behind.
func TestSlots(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "slots")
	for name, s := range map[string]Slots{"memory": NewMemSlots(2), "files": &FileSlots{Dir: dir, N: 2}} {
		a := netip.MustParseAddr("2001:db8::1")
		b := netip.MustParseAddr("2001:db8::ffff:2") // the same /64
		c := netip.MustParseAddr("2001:db8:0:1::1")  // another
		r1, ok1, _ := s.Acquire(a)
		r2, ok2, _ := s.Acquire(b)
		_, ok3, _ := s.Acquire(a)
		if !ok1 || !ok2 || ok3 {
			t.Fatalf("%s: three sessions from one /64: %v %v %v", name, ok1, ok2, ok3)
		}
		r4, ok4, _ := s.Acquire(c)
		if !ok4 {
			t.Fatalf("%s: another /64 refused", name)
		}
		r1()
		r5, ok5, _ := s.Acquire(a)
		if !ok5 {
			t.Fatalf("%s: a released slot not free again", name)
		}
		r2()
		r4()
		r5()
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("slot files left: %v", ents)
	}
}

// TestLockFileRemoved: a lock file removed by its holder is not shared:
// one that waited on it takes the new one instead.
func TestLockFileRemoved(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x")
	f, err := LockFile(path, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := LockFile(path, false); err != ErrLocked {
		t.Fatalf("a second lock: %v", err)
	}
	got := make(chan error)
	go func() {
		g, err := LockFile(path, true)
		if err == nil {
			fi, _ := g.Stat()
			pi, err2 := os.Stat(path)
			if err2 != nil || !os.SameFile(fi, pi) {
				err = os.ErrNotExist
			}
		}
		got <- err
	}()
	time.Sleep(100 * time.Millisecond)
	os.Remove(path)
	f.Close()
	if err := <-got; err != nil {
		t.Fatalf("the waiter: %v", err)
	}
}

func TestDeadline(t *testing.T) {
	l := Limits{Lifetime: 10 * time.Second, AuthTime: 2 * time.Second}
	start := time.Now()
	if d, why := l.Deadline(start, time.Minute, false); d.Sub(start) > 2*time.Second+time.Millisecond || why == "" {
		t.Fatalf("before authentication: %v %q", d.Sub(start), why)
	}
	if d, why := l.Deadline(start, time.Minute, true); d.Sub(start) != 10*time.Second || why == "" {
		t.Fatalf("authenticated: %v %q", d.Sub(start), why)
	}
	if _, why := l.Deadline(start, time.Second, true); why != "" {
		t.Fatalf("idle first: %q", why)
	}
}

// TestLockFileReplaced: a lock file replaced (another file renamed over
// its name) while one waits on it: the waiter takes the file the name now
// leads to, not the one it opened (os.SameFile, not only "the name still
// exists").
func TestLockFileReplaced(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "x")
	f, err := LockFile(path, false)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan error)
	go func() {
		g, err := LockFile(path, true)
		if err == nil {
			defer g.Close()
			fi, _ := g.Stat()
			pi, err2 := os.Stat(path)
			if err2 != nil || !os.SameFile(fi, pi) {
				err = os.ErrNotExist
			}
		}
		got <- err
	}()
	time.Sleep(100 * time.Millisecond)
	os.WriteFile(filepath.Join(dir, "new"), nil, 0o600)
	if err := os.Rename(filepath.Join(dir, "new"), path); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := <-got; err != nil {
		t.Fatalf("the waiter locked the replaced file: %v", err)
	}
}

// TestSlotsNoAddress: sessions without an address (pipes, a superserver
// that says nothing) share one count, as the log says, rather than going
// uncounted.
func TestSlotsNoAddress(t *testing.T) {
	for name, s := range map[string]Slots{"memory": NewMemSlots(2), "files": &FileSlots{Dir: t.TempDir(), N: 2}} {
		var none netip.Addr
		r1, ok1, _ := s.Acquire(none)
		r2, ok2, _ := s.Acquire(none)
		_, ok3, _ := s.Acquire(none)
		if !ok1 || !ok2 || ok3 {
			t.Fatalf("%s: three sessions without an address, cap 2: %v %v %v", name, ok1, ok2, ok3)
		}
		r1()
		if _, ok, _ := s.Acquire(none); !ok {
			t.Fatalf("%s: a released slot not free again", name)
		}
		r2()
	}
}
