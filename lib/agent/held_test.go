package agent

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"im2000/lib/session"
	"im2000/lib/wire"
	"im2000/lib/wire/rnaqp"
)

// from is junk(i) handed over by the address a.
func from(a string, i int) *rnaqp.NotificationAndLocalData {
	n := junk(i)
	n.Submitter = wire.ClientLocation{Addr: netip.MustParseAddr(a), Port: 4000}
	return n
}

func spoolWith(t *testing.T, accounts ...string) *Spool {
	dir := t.TempDir()
	for _, a := range accounts {
		os.Mkdir(filepath.Join(dir, a), 0o700)
	}
	s, err := Open(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// kept counts the notifications of a batch that were kept; any error
// but ErrFull fails the test.
func kept(t *testing.T, errs []error) int {
	t.Helper()
	n := 0
	for _, err := range errs {
		switch {
		case err == nil:
			n++
		case !errors.Is(err, ErrFull):
			t.Fatal(err)
		}
	}
	return n
}

func batch(a string, first, n int) []*rnaqp.NotificationAndLocalData {
	var ns []*rnaqp.NotificationAndLocalData
	for i := range n {
		ns = append(ns, from(a, first+i))
	}
	return ns
}

// TestHeldPerAddress: the count per submitting address holds across
// recipients, an IPv6 address counts by its /64, Remove gives the count
// back (and drops the counter file at 0), and a torn counter is rebuilt
// from the notifications' recorded submitters.
func TestHeldPerAddress(t *testing.T) {
	s := spoolWith(t, "bob", "alice", "carol")
	s.Limits.PerAddr = 6
	if got := kept(t, s.PutAll("bob", batch("2001:db8::1", 0, 4), nil)); got != 4 {
		t.Fatalf("bob kept %d", got)
	}
	if got := kept(t, s.PutAll("alice", batch("2001:db8::2", 10, 4), nil)); got != 2 {
		t.Fatalf("alice from the same /64 kept %d, want the 2 left of 6", got)
	}
	if got := kept(t, s.PutAll("alice", batch("192.0.2.1", 20, 4), nil)); got != 4 {
		t.Fatalf("alice from another address kept %d", got)
	}
	key := session.AddrKey(netip.MustParseAddr("2001:db8::1"))
	held := filepath.Join(s.Dir, ".held", key)
	list, err := s.List("bob", 1<<20)
	if err != nil || len(list) != 4 {
		t.Fatalf("List: %d, %v", len(list), err)
	}
	s.Remove("bob", list[:3])
	if got := kept(t, s.PutAll("carol", batch("2001:db8::3", 30, 5), nil)); got != 3 {
		t.Fatalf("after 3 removed, carol kept %d from the /64, want 3", got)
	}
	// A torn counter is counted again from the spool: 6 held.
	os.WriteFile(held, []byte("1 2"), 0o600)
	if got := kept(t, s.PutAll("carol", batch("2001:db8::3", 40, 1), nil)); got != 0 {
		t.Fatalf("after a rebuild, kept %d, want full", got)
	}
	c := &counter{}
	if b, _ := os.ReadFile(held); !c.parse(string(b)) || c.count != 6 {
		t.Fatalf("rebuilt counter %q, want 6", b)
	}
	for _, a := range []string{"bob", "alice", "carol"} {
		l, _ := s.List(a, 1<<20)
		s.Remove(a, l)
	}
	ents, _ := os.ReadDir(filepath.Join(s.Dir, ".held"))
	if len(ents) != 0 {
		t.Fatalf("counters left at 0: %v", ents)
	}
}

// TestAddrShareOfQuota: one address fills a recipient's quotas; another
// address still gets half of them more, and no further.
func TestAddrShareOfQuota(t *testing.T) {
	s := spoolWith(t, "bob")
	s.Limits.Count = 10
	if got := kept(t, s.PutAll("bob", batch("192.0.2.1", 0, 20), nil)); got != 10 {
		t.Fatalf("one address kept %d for bob, want the quota, 10", got)
	}
	if got := kept(t, s.PutAll("bob", batch("192.0.2.2", 100, 10), nil)); got != 5 {
		t.Fatalf("another address kept %d past the quota, want half of it, 5", got)
	}
	if got := kept(t, s.PutAll("bob", batch("192.0.2.3", 200, 10), nil)); got != 0 {
		t.Fatalf("a third address kept %d past half again of the quota", got)
	}
	size := int64(len(from("192.0.2.1", 0).Marshal()))
	s = spoolWith(t, "bob")
	s.Limits.Bytes = 6 * size
	if got := kept(t, s.PutAll("bob", batch("192.0.2.1", 0, 10), nil)); got != 6 {
		t.Fatalf("one address kept %d under a byte quota of 6, want 6", got)
	}
	if got := kept(t, s.PutAll("bob", batch("192.0.2.2", 100, 10), nil)); got != 3 {
		t.Fatalf("another address kept %d past the byte quota, want 3", got)
	}
}

// TestAddrShareOfRoom: one address flooding recipient after recipient
// stops at about half of the room, octets or inodes, and a notification
// from another address for another recipient still fits.
func TestAddrShareOfRoom(t *testing.T) {
	for _, inodes := range []bool{false, true} {
		t.Run(fmt.Sprint("inodes=", inodes), func(t *testing.T) {
			s := spoolWith(t, "alice", "v0", "v1", "v2", "v3", "v4", "v5", "v6", "v7")
			room := &Room{Left: 1 << 30, Block: 4096}
			if inodes {
				room.CountInodes, room.Inodes = true, 64
			} else {
				room.Left = 64 * 4096
			}
			total := 0
			for v := range 8 {
				total += kept(t, s.PutAll(fmt.Sprint("v", v), batch("192.0.2.1", v*100, 100), room))
			}
			if total == 0 || total > 32 {
				t.Fatalf("one address kept %d across 8 recipients, want at most half the room (32 files)", total)
			}
			if got := kept(t, s.PutAll("alice", batch("192.0.2.2", 1000, 1), room)); got != 1 {
				t.Fatalf("alice's notification from another address after the flood: full")
			}
			// Without an address share, one recipient's flood would stop
			// at half too: the account's own share.
			s2 := spoolWith(t, "bob")
			room2 := &Room{Left: 1 << 30, Block: 4096, CountInodes: true, Inodes: 64}
			if got := kept(t, s2.PutAll("bob", []*rnaqp.NotificationAndLocalData{junk(1), junk(2)}, room2)); got != 2 || room2.Inodes != 62 {
				t.Fatalf("kept %d, %d inodes left: want 2, 62", got, room2.Inodes)
			}
		})
	}
}

// TestRecountClockBack: a counter whose check time lies in the future
// (the clock was stepped back) is checked against the directory at once,
// not after the clock catches up.
func TestRecountClockBack(t *testing.T) {
	s := spoolWith(t, "bob")
	s.Limits.Count = 10
	future := time.Now().Add(24 * time.Hour).Unix()
	os.WriteFile(s.countPath("bob"), fmt.Appendf(nil, "10 9999 %d\n", future), 0o600)
	if err := s.Put("bob", junk(1)); err != nil {
		t.Fatalf("a counter checked 'tomorrow' that says full: %v, want a recount and the notification kept", err)
	}
	// A counter checked just now is trusted until recountEvery.
	os.WriteFile(s.countPath("bob"), fmt.Appendf(nil, "10 9999 %d\n", time.Now().Unix()), 0o600)
	if err := s.Put("bob", junk(2)); !errors.Is(err, ErrFull) {
		t.Fatalf("a fresh counter that says full: %v", err)
	}
}

// TestRecountOnlyWhatSaysNo: a notification for a full recipient does not
// make its address's counter be recounted (a read of the whole spool),
// however old its last check: only the counters that refuse are.
func TestRecountOnlyWhatSaysNo(t *testing.T) {
	s := spoolWith(t, "bob")
	s.Limits.Count = 4
	// bob at his quota (4) and past it by half again (2).
	if got := kept(t, s.PutAll("bob", append(batch("192.0.2.1", 0, 4), batch("192.0.2.2", 10, 2)...), nil)); got != 6 {
		t.Fatalf("kept %d", got)
	}
	held := filepath.Join(s.Dir, ".held", "192.0.2.3")
	old := time.Now().Add(-2 * recountEvery).Unix()
	os.WriteFile(held, fmt.Appendf(nil, "7 700 %d\n", old), 0o600) // wrong, and checked long ago
	if got := kept(t, s.PutAll("bob", batch("192.0.2.3", 20, 1), nil)); got != 0 {
		t.Fatal("kept one over bob's quota")
	}
	c := &counter{}
	if b, _ := os.ReadFile(held); !c.parse(string(b)) || c.checked != old || c.count != 7 {
		t.Fatalf("the address's counter is %q: recounted for a full recipient", b)
	}
	// When the address's own limit refuses, it is recounted: 0 held.
	s.Limits.Count, s.Limits.PerAddr = 0, 7
	if got := kept(t, s.PutAll("bob", batch("192.0.2.3", 30, 1), nil)); got != 1 {
		t.Fatal("the address's stale counter was not recounted")
	}
}
