package policy

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// TestAllowUnicodeSpace: lib/addr takes NBSP as atext, so "\u00a0ceo@x"
// is another address than ceo@x; the line Allow writes must allow the
// address asked for and not ceo@x (Parse used to trim Unicode spaces).
func TestAllowUnicodeSpace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "senderpolicy")
	writeFile(t, path, "default hold\n")
	sender := "\u00a0ceo@evil.example"
	for range 2 {
		if err := Allow(path, sender); err != nil {
			t.Fatal(err)
		}
	}
	b, _ := os.ReadFile(path)
	if string(b) != "default hold\nallow "+sender+"\n" {
		t.Errorf("the file: %q", b)
	}
	p, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if decide(t, p, sender) != Fetch || decide(t, p, "ceo@evil.example") != Hold {
		t.Errorf("allow %q: %v for itself, %v for ceo@evil.example", sender, decide(t, p, sender), decide(t, p, "ceo@evil.example"))
	}
	// Other Unicode spaces are part of a word, not around it.
	if p, err := Parse("p", strings.NewReader("default\u00a0hold\n")); err == nil {
		t.Errorf("\"default\\u00a0hold\" parsed: %v", p.Default)
	}
	if p, err := Parse("p", strings.NewReader(" \tdeny @spam.example \t\r\n")); err != nil || decide(t, p, "x@spam.example") != Deny {
		t.Errorf("ASCII blanks around a line: %v", err)
	}
}

// TestAllowConcurrent: 40 Allows at once keep 40 lines (the file is
// locked around each read-modify-write).
func TestAllowConcurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "senderpolicy")
	writeFile(t, path, "default hold\n")
	var wg sync.WaitGroup
	errs := make([]error, 40)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = Allow(path, strings.Repeat("a", i+1)+"@example.org")
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Allow %d: %v", i, err)
		}
	}
	p, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := range errs {
		if a := strings.Repeat("a", i+1) + "@example.org"; decide(t, p, a) != Fetch {
			t.Errorf("%s lost", a)
		}
	}
}

// TestDanglingSymlink: a policy that is a link to nothing is an error, not
// "no policy" (which would fetch everything); Allow through a link writes
// the file the link names and keeps the link; Allow refuses a dangling one.
func TestDanglingSymlink(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "senderpolicy")
	if err := os.Symlink(filepath.Join(dir, "missing"), path); err != nil {
		t.Fatal(err)
	}
	if p, err := Load(path); err == nil {
		t.Errorf("a dangling link loaded as a policy (default %v)", p.Default)
	}
	if err := Allow(path, "a@example.org"); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("Allow through a dangling link: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "missing")); err == nil {
		t.Error("Allow created the link's target")
	}
	real := filepath.Join(dir, "real")
	writeFile(t, real, "default hold\n")
	os.Remove(path)
	if err := os.Symlink(real, path); err != nil {
		t.Fatal(err)
	}
	if err := Allow(path, "a@example.org"); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(path)
	rb, _ := os.ReadFile(real)
	if err != nil || fi.Mode()&os.ModeSymlink == 0 || string(rb) != "default hold\nallow a@example.org\n" {
		t.Errorf("after Allow through a link: %v %v, the target %q", fi.Mode(), err, rb)
	}
	// A policy that cannot be read for another reason fails closed too.
	if os.Getuid() != 0 {
		os.Chmod(real, 0)
		if _, err := Load(path); err == nil {
			t.Error("an unreadable policy loaded")
		}
	}
}

// TestAllowMeansIt: an address is allowed over a deny of its domain (the
// more specific rule); an argument with a line end writes nothing.
func TestAllowMeansIt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "senderpolicy")
	writeFile(t, path, "default hold\ndeny @evil.example\n")
	if err := Allow(path, "ceo@evil.example"); err != nil {
		t.Fatal(err) // an address over a domain: it does allow
	}
	for _, a := range []string{"x\n@evil.example", "\"a\nb\"@evil.example"} {
		if err := Allow(path, a); err == nil {
			t.Errorf("Allow(%q) wrote a line", a)
		}
	}
	b, _ := os.ReadFile(path)
	if string(b) != "default hold\ndeny @evil.example\nallow ceo@evil.example\n" {
		t.Errorf("the file: %q", b)
	}
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(fmt.Errorf("%s: %w", path, err))
	}
}
