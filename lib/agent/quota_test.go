package agent

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"im2000/lib/session"
	"im2000/lib/wire"
	"im2000/lib/wire/rnaqp"
	"im2000/lib/wire/rnasp"
)

func junk(i int) *rnaqp.NotificationAndLocalData {
	var id [16]byte
	copy(id[:], fmt.Sprintf("%016d", i))
	return &rnaqp.NotificationAndLocalData{Notification: rnasp.Notification{
		StoreClear: wire.ServiceLocation{Domain: wire.DomainName{"store", "example", "org"}},
		Recipient:  wire.MailBox{Local: "bob", Domain: wire.DomainName{"example", "net"}},
		ID:         id, Sender: "mallory@example.org"}}
}

func files(t *testing.T, dir string) int {
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// TestQuota: the counter stops an account at its quota, re-sends cost
// nothing, Remove gives the room back, and a counter that drifted or was
// lost is mended from the directory.
func TestQuota(t *testing.T) {
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "bob"), 0o700)
	s, err := Open(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	s.Limits.Count = 10
	var ns []*rnaqp.NotificationAndLocalData
	for i := range 15 {
		ns = append(ns, junk(i))
	}
	errs := s.PutAll("bob", ns, nil)
	for i, err := range errs {
		if (i < 10) != (err == nil) || i >= 10 && !errors.Is(err, ErrFull) {
			t.Fatalf("notification %d: %v", i, err)
		}
	}
	if err := s.Put("bob", ns[3]); err != nil {
		t.Fatalf("a re-send at the quota: %v", err)
	}
	if n := files(t, filepath.Join(dir, "bob")); n != 10 {
		t.Fatalf("%d files, want 10", n)
	}
	list, err := s.List("bob", 1<<20)
	if err != nil || len(list) != 10 {
		t.Fatalf("List: %d, %v", len(list), err)
	}
	s.Remove("bob", list[:4])
	errs = s.PutAll("bob", ns[10:], nil)
	for i, err := range errs {
		if (i < 4) != (err == nil) {
			t.Fatalf("after Remove, notification %d: %v", 10+i, err)
		}
	}
	// A file removed behind the counter's back: the counter says full
	// until its next recount, which a stale check time allows.
	os.Remove(filepath.Join(dir, "bob", Key(ns[12])))
	if err := s.Put("bob", junk(100)); !errors.Is(err, ErrFull) {
		t.Fatalf("right after a recount: %v, want full", err)
	}
	old := time.Now().Add(-2 * recountEvery).Unix()
	os.WriteFile(s.countPath("bob"), fmt.Appendf(nil, "10 9999 %d\n", old), 0o600)
	if err := s.Put("bob", junk(100)); err != nil {
		t.Fatalf("after the recount time: %v", err)
	}
	// A torn counter is rebuilt.
	os.WriteFile(s.countPath("bob"), []byte("1 2"), 0o600)
	if err := s.Put("bob", junk(101)); !errors.Is(err, ErrFull) {
		t.Fatalf("rebuilt counter: %v, want full", err)
	}
	b, _ := os.ReadFile(s.countPath("bob"))
	c := &counter{}
	if !c.parse(string(b)) || c.count != 10 {
		t.Fatalf("counter %q after a rebuild, want 10 notifications", b)
	}
}

// TestQuotaBytesAndRoom: the byte quota, the disk reserve, and the rule
// that an account holds no more than what is left free above the reserve.
func TestQuotaBytesAndRoom(t *testing.T) {
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "bob"), 0o700)
	s, _ := Open(dir, false)
	size := int64(len(junk(0).Marshal()))
	s.Limits.Bytes = 3 * size
	errs := s.PutAll("bob", []*rnaqp.NotificationAndLocalData{junk(0), junk(1), junk(2), junk(3)}, nil)
	if errs[2] != nil || !errors.Is(errs[3], ErrFull) {
		t.Fatalf("byte quota: %v", errs)
	}
	s.Limits.Bytes = 0
	room := &Room{Left: 10 * 4096, Block: 4096}
	var ns []*rnaqp.NotificationAndLocalData
	for i := 10; i < 20; i++ {
		ns = append(ns, junk(i))
	}
	errs = s.PutAll("bob", ns, room)
	kept := 0
	for _, err := range errs {
		if err == nil {
			kept++
		}
	}
	// bob holds 3 files already; each file costs at most 2 blocks in the
	// upper bound: he may hold no more than what is left.
	if kept == 0 || kept >= 5 || room.Left < 0 {
		t.Fatalf("kept %d with the room rule, %d octets left", kept, room.Left)
	}
	os.Mkdir(filepath.Join(dir, "alice"), 0o700)
	if err := s.PutAll("alice", []*rnaqp.NotificationAndLocalData{junk(50)}, room)[0]; err != nil {
		t.Fatalf("alice after bob's flood: %v", err)
	}
	if err := s.PutAll("alice", []*rnaqp.NotificationAndLocalData{junk(51)}, &Room{Left: 100, Block: 4096})[0]; !errors.Is(err, ErrFull) {
		t.Fatalf("below the reserve: %v", err)
	}
}

// TestDiskFullIsFull: a real full disk (a tmpfs) is ErrFull, not another
// error. Needs root to mount.
func TestDiskFullIsFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root (CI runs as root)")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", dir).Run() })
	os.Mkdir(filepath.Join(dir, "bob"), 0o700)
	s, err := Open(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	f, _ := os.Create(filepath.Join(dir, "filler"))
	for {
		if _, err := f.Write(make([]byte, 4096)); err != nil {
			break
		}
	}
	f.Close()
	var got error
	for i := 0; i < 200 && got == nil; i++ {
		got = s.Put("bob", junk(i))
	}
	if !errors.Is(got, ErrFull) || !errors.Is(got, unix.ENOSPC) {
		t.Fatalf("a full disk gave %v, want ErrFull wrapping ENOSPC", got)
	}
	// Room says what statfs says, less the reserve: nothing left.
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	s.Limits.Reserve = 1
	r, err := s.Room()
	if err != nil || r.Left != int64(st.Bavail)*int64(st.Bsize)-1 || r.Left >= r.Block || r.Block != int64(st.Bsize) {
		t.Fatalf("room %+v (%v) on a full disk; statfs: %d blocks of %d free", r, err, st.Bavail, st.Bsize)
	}
	if kept(t, s.PutAll("bob", []*rnaqp.NotificationAndLocalData{junk(500)}, r)) != 0 {
		t.Fatal("kept a notification with no room")
	}
}

func TestRate(t *testing.T) {
	r := &Rate{Dir: filepath.Join(t.TempDir(), "rate"), PerMinute: 60, Burst: 100}
	a := netip.MustParseAddr("2001:db8:1:2:3:4:5:6")
	b := netip.MustParseAddr("2001:db8:1:2:ffff::1") // the same /64
	c := netip.MustParseAddr("2001:db8:1:3::1")
	now := time.Unix(1_800_000_000, 0)
	if got, _ := r.Take(a, 70, now); got != 70 {
		t.Fatalf("first take %d", got)
	}
	if got, _ := r.Take(b, 70, now); got != 30 {
		t.Fatalf("the same /64 got %d, want the 30 left", got)
	}
	if got, _ := r.Take(c, 70, now); got != 70 {
		t.Fatalf("another /64 got %d", got)
	}
	if got, _ := r.Take(a, 70, now.Add(10*time.Second)); got != 10 {
		t.Fatalf("ten seconds later %d, want 10", got)
	}
	if got, _ := r.Take(netip.MustParseAddr("::ffff:127.0.0.1"), 5, now); got != 5 || session.AddrKey(netip.MustParseAddr("::ffff:127.0.0.1")) != "127.0.0.1" {
		t.Fatalf("mapped IPv4: %d, %s", got, session.AddrKey(netip.MustParseAddr("::ffff:127.0.0.1")))
	}
	// A sweep long after removes the buckets, which are full again by then.
	later := now.Add(time.Hour)
	r.Take(c, 1, later)
	ents, _ := os.ReadDir(r.Dir)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if len(names) != 2 { // .swept and c's bucket, just taken from
		t.Fatalf("after a sweep: %v", names)
	}
	if got, _ := r.Take(a, 200, later); got != 100 {
		t.Fatalf("a swept bucket gives %d, want a full one (100)", got)
	}
}

func FuzzCounter(f *testing.F) {
	f.Add("10 4000 1800000000\n")
	f.Add("1 2")
	f.Add("-1 0 0\n")
	f.Fuzz(func(t *testing.T, s string) {
		c := &counter{}
		if c.parse(s) && (c.count < 0 || c.bytes < 0 || c.checked < 0) {
			t.Fatalf("%q parsed as %+v", s, c)
		}
	})
}

func FuzzBucket(f *testing.F) {
	f.Add("100000 1800000000000000000\n")
	f.Add("5 ")
	f.Add("-5 0\n")
	f.Fuzz(func(t *testing.T, s string) {
		if tokens, _, ok := parseBucket(s); ok && tokens < 0 {
			t.Fatalf("%q: %d tokens", s, tokens)
		}
	})
}
