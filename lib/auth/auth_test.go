package auth

import (
	"net/netip"
	"os"
	"path/filepath"
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
	// Another address has its own count; a success clears it.
	if d := c.Failures.Fail(netip.MustParseAddr("192.0.2.2")); d != Base {
		t.Fatalf("first failure of a new address: %v", d)
	}
	c.Check(a, "alice", "right")
	if d := c.Failures.Fail(a); d != Base {
		t.Fatalf("after a success: %v", d)
	}
	for i := 0; i < 10; i++ {
		c.Failures.Fail(a)
	}
	if d := c.Failures.Fail(a); d != Max {
		t.Fatalf("many failures: %v, want the cap %v", d, Max)
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
