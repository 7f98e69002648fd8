package auth

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"im2000/lib/conf"
)

func setup(t *testing.T) (*Checker, conf.Dir) {
	d := conf.Dir(t.TempDir())
	h, _ := bcrypt.GenerateFromPassword([]byte("right"), bcrypt.MinCost)
	os.WriteFile(d.Path("passwords"), []byte("# accounts\nalice:"+string(h)+"\n"), 0o600)
	c, err := FromConf(d, filepath.Join(t.TempDir(), "fail"))
	if err != nil {
		t.Fatal(err)
	}
	return c, d
}

func TestPasswordsFile(t *testing.T) {
	c, _ := setup(t)
	a := netip.MustParseAddr("192.0.2.1")
	if ok, err := c.Check(a, "alice", "right"); !ok || err != nil {
		t.Fatalf("right password: %v %v", ok, err)
	}
	start := time.Now()
	if ok, _ := c.Check(a, "alice", "wrong"); ok {
		t.Fatal("wrong password accepted")
	}
	if ok, _ := c.Check(a, "nobody", "right"); ok {
		t.Fatal("unknown account accepted")
	}
	if took := time.Since(start); took < Base+2*Base {
		t.Fatalf("two failures answered in %v: no growing delay", took)
	}
	// Another address has its own count.
	if d := c.Failures.Fail(netip.MustParseAddr("192.0.2.2"), "alice"); d != Base {
		t.Fatalf("first failure of a new address: %v", d)
	}
	// A success clears only its own account's failures: a's failure for
	// nobody still counts, so the next is the second.
	c.Check(a, "alice", "right")
	time.Sleep(c.Failures.Fail(a, "carol")) // wait out the spacing, to see the delay alone
	if d := c.Failures.Fail(a, "carol"); d != 4*Base {
		t.Fatalf("after a success for alice, with nobody's and carol's failures: %v, want %v", d, 4*Base)
	}
	for i := 0; i < 10; i++ {
		c.Failures.Fail(a, "alice")
	}
	if d := c.Failures.Fail(a, "alice"); d < Max {
		t.Fatalf("many failures: %v, want at least the cap %v", d, Max)
	}
}

// TestSpacing: failures from one address in parallel are answered one
// delay apart, as if they came one after another.
func TestSpacing(t *testing.T) {
	l := &Limiter{Dir: t.TempDir(), Base: 100 * time.Millisecond, Max: 100 * time.Millisecond}
	a := netip.MustParseAddr("2001:db8::1")
	b := netip.MustParseAddr("2001:db8::2:3") // the same /64
	var waits []time.Duration
	for i := 0; i < 10; i++ {
		x := a
		if i%2 == 1 {
			x = b
		}
		waits = append(waits, l.Fail(x, "alice"))
	}
	if waits[9] < 900*time.Millisecond {
		t.Fatalf("ten failures at once wait %v: not spaced", waits)
	}
	if d := l.Fail(netip.MustParseAddr("2001:db8:0:1::1"), "alice"); d > 100*time.Millisecond {
		t.Fatalf("another /64 waits %v", d)
	}
}

// TestInvalidNames: a name that is no account name never reaches the
// checkpassword program, and still counts as a failure.
func TestInvalidNames(t *testing.T) {
	_, d := setup(t)
	marker := filepath.Join(t.TempDir(), "ran")
	prog := filepath.Join(t.TempDir(), "checkpw")
	os.WriteFile(prog, []byte("#!/bin/sh\ntouch "+marker+"\nexit 1\n"), 0o755)
	os.WriteFile(d.Path("checkpassword"), []byte(prog+"\n"), 0o644)
	os.WriteFile(d.Path("authdelay"), []byte("1\n"), 0o644)
	c, err := FromConf(d, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	a := netip.MustParseAddr("192.0.2.9")
	for _, name := range []string{"bob\x00x", "bob\n", "", ".hidden", strings.Repeat("a", 65), "b\x7fob"} {
		if ok, err := c.Check(a, name, "secret"); ok || err != nil {
			t.Fatalf("%q: %v %v", name, ok, err)
		}
	}
	if ok, err := c.Check(a, "bob", "se\x00cret"); ok || err != nil {
		t.Fatalf("NUL in the password: %v %v", ok, err)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("the checkpassword program ran for an invalid name")
	}
	c.Check(a, "bob", "secret")
	if _, err := os.Stat(marker); err != nil {
		t.Fatal("the checkpassword program did not run for a valid name")
	}
}

// TestExpiry: old failures are forgotten, and their files removed.
func TestExpiry(t *testing.T) {
	dir := t.TempDir()
	l := &Limiter{Dir: dir, Base: time.Millisecond, Max: time.Second, Window: time.Second}
	for i := 0; i < 50; i++ {
		l.Fail(netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}), "alice")
	}
	time.Sleep(2100 * time.Millisecond) // the window, in the files' whole seconds
	os.Remove(filepath.Join(dir, ".swept"))
	if d := l.Fail(netip.MustParseAddr("192.0.2.0"), "alice"); d != time.Millisecond {
		t.Fatalf("a failure after the window: %v, want the first delay", d)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 2 { // 192.0.2.0 and .swept
		t.Fatalf("after the sweep: %d files", len(ents))
	}
}

// TestDummyCost: an unknown account is checked against a real hash of the
// file, so it costs what the file's hashes cost.
func TestDummyCost(t *testing.T) {
	d := conf.Dir(t.TempDir())
	h, _ := bcrypt.GenerateFromPassword([]byte("right"), 12)
	os.WriteFile(d.Path("passwords"), []byte("alice:"+string(h)+"\n"), 0o600)
	os.WriteFile(d.Path("authdelay"), []byte("0\n"), 0o644)
	c, err := FromConf(d, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	a := netip.MustParseAddr("192.0.2.1")
	if ok, _ := c.Check(a, "nobody", "right"); ok {
		t.Fatal("an unknown account with another's password accepted")
	}
	// The file's cost, 12, not the fixed dummy's 10.
	if known, unknown := checkedCost(t, c, "alice"), checkedCost(t, c, "nobody"); known != 12 || unknown != 12 {
		t.Fatalf("unknown account checked at cost %d, known at %d: want 12 for both", unknown, known)
	}
}

func TestCheckPasswordProgram(t *testing.T) {
	_, d := setup(t)
	prog := filepath.Join(t.TempDir(), "checkpw")
	// A checkpassword that accepts bob/secret, refuses the rest, and fails
	// temporarily for "down".
	os.WriteFile(prog, []byte(`#!/bin/bash
IFS= read -r -d '' user <&3
IFS= read -r -d '' pass <&3
[ "$user" = down ] && exit 111
[ "$user" = bob ] && [ "$pass" = secret ] && exec "$@"
exit 1
`), 0o755)
	os.WriteFile(d.Path("checkpassword"), []byte(prog+"\n"), 0o644)
	c, err := FromConf(d, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	a := netip.MustParseAddr("::1")
	if ok, err := c.Check(a, "bob", "secret"); !ok || err != nil {
		t.Fatalf("bob: %v %v", ok, err)
	}
	if ok, err := c.Check(a, "bob", "nope"); ok || err != nil {
		t.Fatalf("wrong: %v %v", ok, err)
	}
	if _, err := c.Check(a, "down", "x"); err == nil {
		t.Fatal("exit 111 not reported as temporary")
	}
}
