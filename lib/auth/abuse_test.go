package auth

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"im2000/lib/conf"
)

// Regression tests from the second review of issue 15.

// checkerWith is a Checker on a passwords file of the given lines, with
// no failure delay.
func checkerWith(t *testing.T, lines ...string) *Checker {
	t.Helper()
	d := conf.Dir(t.TempDir())
	os.WriteFile(d.Path("passwords"), []byte(strings.Join(lines, "\n")+"\n"), 0o600)
	os.WriteFile(d.Path("authdelay"), []byte("0\n"), 0o644)
	os.WriteFile(d.Path("authmaxdelay"), []byte("0\n"), 0o644)
	c, err := FromConf(d, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// checkedCost is the bcrypt cost of the hash a wrong password for
// account was checked against: what the check costs, told without a clock
// (timings fail on a loaded machine and pass by luck on an idle one).
func checkedCost(t *testing.T, c *Checker, account string) int {
	t.Helper()
	cost := -1
	compareHash = func(hash, password []byte) error {
		n, err := bcrypt.Cost(hash)
		if err != nil {
			t.Fatalf("checked against %q, not a hash: %v", hash, err)
		}
		cost = n
		return bcrypt.ErrMismatchedHashAndPassword
	}
	defer func() { compareHash = bcrypt.CompareHashAndPassword }()
	c.Check(netip.MustParseAddr("192.0.2.1"), account, "wrong")
	if cost < 0 {
		t.Fatalf("a wrong password for %s was checked against no hash at all", account)
	}
	return cost
}

// TestStandInCostliest: with hashes of mixed costs (an old cheap one
// first), a missing account is checked against the costliest hash, not
// the first: it costs at least what an existing account does.
func TestStandInCostliest(t *testing.T) {
	h4, _ := bcrypt.GenerateFromPassword([]byte("x"), 4)
	h10, _ := bcrypt.GenerateFromPassword([]byte("right"), 10)
	c := checkerWith(t, "old:"+string(h4), "alice:"+string(h10))
	if k, u := checkedCost(t, c, "alice"), checkedCost(t, c, "nosuch"); k != 10 || u != 10 {
		t.Errorf("existing account checked at cost %d, a missing one at %d: want 10 for both", k, u)
	}
}

// TestDisabledAccount: an account whose hash is none ("bob:!") is
// checked against the stand-in like a missing one, not refused at once.
func TestDisabledAccount(t *testing.T) {
	h, _ := bcrypt.GenerateFromPassword([]byte("right"), 10)
	c := checkerWith(t, "alice:"+string(h), "bob:!", "carol:")
	if b, cr, u := checkedCost(t, c, "bob"), checkedCost(t, c, "carol"), checkedCost(t, c, "nosuch"); b != 10 || cr != 10 || u != 10 {
		t.Errorf("disabled accounts checked at cost %d and %d, a missing one at %d: want 10 for all", b, cr, u)
	}
	if ok, err := c.Check(netip.MustParseAddr("192.0.2.1"), "bob", "!"); ok || err != nil {
		t.Errorf("disabled account: %v %v", ok, err)
	}
}

// TestNotServedIsAFailure: an account the server does not serve (queryd:
// no spool) fails like a wrong password, right password or not: counted,
// delayed, and never a success that clears the count.
func TestNotServedIsAFailure(t *testing.T) {
	h, _ := bcrypt.GenerateFromPassword([]byte("right"), 4)
	c := checkerWith(t, "alice:"+string(h))
	c.Failures.Base, c.Failures.Max = 300*time.Millisecond, 300*time.Millisecond
	c.Serves = func(a string) bool { return a != "alice" }
	a := netip.MustParseAddr("192.0.2.2")
	for _, pw := range []string{"wrong", "right"} {
		s := time.Now()
		ok, err := c.Check(a, "alice", pw)
		took := time.Since(s)
		if ok || err != nil {
			t.Fatalf("%s: %v %v", pw, ok, err)
		}
		if took < 250*time.Millisecond {
			t.Errorf("%s password of an account not served: answered in %v, before the failure delay", pw, took)
		}
	}
	path, key := c.Failures.key(a)
	b, _ := os.ReadFile(path)
	if n := parseBucket(b)[key].total(); n != 2 {
		t.Errorf("%d failures counted, want 2", n)
	}
}

// TestThrottled: once an address's answers are due further ahead than
// the longest delay, its attempts are refused at once, temporarily, and
// unchecked (the checkpassword program does not run).
func TestThrottled(t *testing.T) {
	d := conf.Dir(t.TempDir())
	marker := filepath.Join(t.TempDir(), "ran")
	prog := filepath.Join(t.TempDir(), "checkpw")
	os.WriteFile(prog, []byte("#!/bin/sh\ntouch "+marker+"\nexit 1\n"), 0o755)
	os.WriteFile(d.Path("checkpassword"), []byte(prog+"\n"), 0o644)
	c, err := FromConf(d, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	c.Failures.Base, c.Failures.Max = 200*time.Millisecond, 200*time.Millisecond
	a := netip.MustParseAddr("192.0.2.3")
	for i := 0; i < 10; i++ {
		c.Failures.Fail(a, "bob") // ten in parallel: the tenth due in 2 s
	}
	s := time.Now()
	ok, err := c.Check(a, "bob", "guess")
	if ok || !errors.Is(err, ErrThrottled) || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("attempt after ten failures at once: %v %v, want ErrThrottled", ok, err)
	}
	if took := time.Since(s); took > time.Second {
		t.Errorf("refused after %v, not at once", took)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("the attempt was checked")
	}
	if ok, err := c.Check(netip.MustParseAddr("192.0.2.4"), "bob", "guess"); ok || err != nil {
		t.Errorf("another address: %v %v", ok, err)
	}
}

// TestFrontends: a front end's attempts (authfrontends) are neither
// delayed nor counted; others' still are.
func TestFrontends(t *testing.T) {
	h, _ := bcrypt.GenerateFromPassword([]byte("right"), 4)
	c := checkerWith(t, "alice:"+string(h))
	c.Failures.Base, c.Failures.Max = 300*time.Millisecond, time.Second
	var err error
	if c.Frontends, err = ParseFrontends("192.0.2.10\n2001:db8:1::/48"); err != nil {
		t.Fatal(err)
	}
	for _, fe := range []string{"192.0.2.10", "::ffff:192.0.2.10", "2001:db8:1:2::5"} {
		s := time.Now()
		for i := 0; i < 5; i++ {
			if ok, err := c.Check(netip.MustParseAddr(fe), "alice", "wrong"); ok || err != nil {
				t.Fatalf("%s: %v %v", fe, ok, err)
			}
		}
		if took := time.Since(s); took > 250*time.Millisecond {
			t.Errorf("front end %s: five failures took %v", fe, took)
		}
		if ok, _ := c.Check(netip.MustParseAddr(fe), "alice", "right"); !ok {
			t.Errorf("front end %s: the right password refused", fe)
		}
	}
	if ents, _ := os.ReadDir(c.Failures.Dir); len(ents) != 0 {
		t.Errorf("a front end's failures counted: %d files", len(ents))
	}
	s := time.Now()
	c.Check(netip.MustParseAddr("192.0.2.11"), "alice", "wrong")
	if took := time.Since(s); took < 250*time.Millisecond {
		t.Errorf("another address not delayed: %v", took)
	}
	for _, bad := range []string{"192.0.2.300", "example.com", "10.0.0.0/33"} {
		if _, err := ParseFrontends(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestManyAddressesBoundedFiles: failures from 6,000 /64s make at most
// buckets files (and the sweep mark), not one each.
func TestManyAddressesBoundedFiles(t *testing.T) {
	dir := t.TempDir()
	l := &Limiter{Dir: dir, Base: time.Nanosecond, Max: time.Nanosecond}
	for i := 0; i < 6000; i++ {
		l.Fail(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 0, byte(i >> 8), byte(i)}), "")
	}
	ents, _ := os.ReadDir(dir)
	t.Logf("files after failures from 6,000 /64s: %d", len(ents))
	if len(ents) > buckets+1 {
		t.Errorf("%d files, want at most %d", len(ents), buckets+1)
	}
	for _, e := range ents {
		if fi, _ := e.Info(); fi.Size() > maxRecord {
			t.Errorf("%s: %d octets", e.Name(), fi.Size())
		}
	}
}

// TestBucketEviction: a bucket remembers at most maxAddrs addresses, the
// most recently active; the others' records are forgotten whole.
func TestBucketEviction(t *testing.T) {
	bk := bucket{}
	for i := 0; i < maxAddrs+10; i++ {
		bk[fmt.Sprintf("192.0.2.%d", i)] = &record{next: int64(i), accounts: map[string]count{}}
	}
	bk.trim()
	if len(bk) != maxAddrs || bk["192.0.2.0"] != nil || bk[fmt.Sprintf("192.0.2.%d", maxAddrs+9)] == nil {
		t.Fatalf("after trim: %d addresses", len(bk))
	}
	again := parseBucket(bk.encode())
	if len(again) != maxAddrs || string(again.encode()) != string(bk.encode()) {
		t.Fatalf("bucket does not read back")
	}
}

// TestTrimKeepsCount: an address failing against more accounts than its
// record keeps apart loses none of its count (trim moves the rest to
// "other").
func TestTrimKeepsCount(t *testing.T) {
	l := &Limiter{Dir: t.TempDir(), Base: time.Nanosecond, Max: time.Nanosecond}
	a := netip.MustParseAddr("192.0.2.5")
	for i := 0; i < maxAccounts+8; i++ {
		l.Fail(a, fmt.Sprintf("user%d", i))
	}
	path, key := l.key(a)
	b, _ := os.ReadFile(path)
	r := parseBucket(b)[key]
	if r == nil || r.total() != maxAccounts+8 || len(r.accounts) > maxAccounts {
		t.Fatalf("record %q: want a total of %d", b, maxAccounts+8)
	}
}

// TestEmptyRecordRemoved: a bucket left with nothing to remember is
// removed, not kept empty.
func TestEmptyRecordRemoved(t *testing.T) {
	dir := t.TempDir()
	l := &Limiter{Dir: dir, Base: time.Nanosecond, Max: time.Nanosecond}
	a := netip.MustParseAddr("192.0.2.6")
	l.Fail(a, "alice")
	path, _ := l.key(a)
	if _, err := os.Stat(path); err != nil {
		t.Fatal("no record after a failure")
	}
	time.Sleep(time.Millisecond) // the answer's due time passed
	l.Succeed(a, "alice")
	if _, err := os.Stat(path); err == nil {
		t.Fatal("the empty record's file was kept")
	}
}

// TestCannotCountWaitsMax: when no failure can be recorded (here the
// directory is a file), every failure waits the longest delay.
func TestCannotCountWaitsMax(t *testing.T) {
	f := filepath.Join(t.TempDir(), "file")
	os.WriteFile(f, nil, 0o600)
	l := &Limiter{Dir: f, Base: time.Millisecond, Max: 3 * time.Second}
	if d := l.Fail(netip.MustParseAddr("192.0.2.7"), "alice"); d != 3*time.Second {
		t.Fatalf("a failure that could not be counted waits %v, want Max", d)
	}
}

// mountFull mounts a small tmpfs on a new directory. Needs root (CI runs
// as root).
func mountFull(t *testing.T, opts string) string {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root (CI runs as root)")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", opts, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if exec.Command("umount", dir).Run() != nil {
			exec.Command("umount", "-l", dir).Run()
		}
	})
	return dir
}

// TestFullDisk: the state directory's filesystem full: an address's
// failures are still spaced (ten at once: the tenth waits a second), and
// its record is not lost to a truncation before a failed write.
func TestFullDisk(t *testing.T) {
	dir := mountFull(t, "size=64k")
	l := &Limiter{Dir: dir, Base: 100 * time.Millisecond, Max: 8 * time.Second}
	a := netip.MustParseAddr("192.0.2.7")
	for i := 0; i < 5; i++ {
		l.Fail(a, "alice")
	}
	path, key := l.key(a)
	for i := 0; ; i++ {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf(".fill%d", i)), make([]byte, 4096), 0o600); err != nil {
			break
		}
	}
	var waits []time.Duration
	for i := 0; i < 10; i++ {
		waits = append(waits, l.Fail(a, "alice"))
	}
	b, _ := os.ReadFile(path)
	t.Logf("on a full disk: waits %v, record %q", waits, b)
	if waits[9] < time.Second {
		t.Errorf("ten failures at once on a full disk: the tenth waits %v", waits[9])
	}
	if r := parseBucket(b)[key]; r == nil || r.total() < 5 {
		t.Errorf("the record was lost: %q", b)
	}
}

// TestNoInodes: no inode left for a new address's file: its failures wait
// the longest delay rather than none.
func TestNoInodes(t *testing.T) {
	dir := mountFull(t, "size=1m,nr_inodes=64")
	for i := 0; ; i++ {
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf(".fill%d", i)))
		if err != nil {
			break
		}
		f.Close()
	}
	l := &Limiter{Dir: dir, Base: 100 * time.Millisecond, Max: 8 * time.Second}
	var waits []time.Duration
	for i := 0; i < 10; i++ {
		waits = append(waits, l.Fail(netip.MustParseAddr("192.0.2.8"), "alice"))
	}
	t.Logf("no inode left: waits %v", waits)
	if waits[9] < time.Second {
		t.Errorf("ten failures at once with no inode left: the tenth waits %v", waits[9])
	}
}

// TestProgramTimeout: a checkpassword program that does not answer is
// killed after the timeout, and the check is a temporary failure.
func TestProgramTimeout(t *testing.T) {
	d := conf.Dir(t.TempDir())
	prog := filepath.Join(t.TempDir(), "checkpw")
	os.WriteFile(prog, []byte("#!/bin/sh\nexec sleep 30\n"), 0o755)
	os.WriteFile(d.Path("checkpassword"), []byte(prog+"\n"), 0o644)
	os.WriteFile(d.Path("authtimeout"), []byte("1\n"), 0o644)
	c, err := FromConf(d, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s := time.Now()
	ok, err := c.Check(netip.MustParseAddr("192.0.2.9"), "bob", "secret")
	took := time.Since(s)
	if ok || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("hanging program: %v %v, want ErrUnavailable", ok, err)
	}
	if took > 5*time.Second {
		t.Fatalf("hanging program held the check %v (authtimeout 1 s)", took)
	}
}
