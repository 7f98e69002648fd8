package store

import (
	"bytes"
	"net/netip"
	"os"
	"testing"
	"time"
)

// TestCountReadLegacyLarge: an older counter (one octet per retrieval)
// longer than the current form's largest file keeps its whole total when
// the next count rewrites it: 100,000 retrievals become 100,001, not the
// 32,809 that reading it through the current form's bound gave.
func TestCountReadLegacyLarge(t *testing.T) {
	s, a := newAccount(t)
	env, err := inject(t, a, submission(t, "news"), "x", Limits{})
	if err != nil {
		t.Fatal(err)
	}
	path := a.readsPath(env.ID, env.Lists[0].ID)
	if err := os.WriteFile(path, bytes.Repeat([]byte{1}, 100000), 0o600); err != nil {
		t.Fatal(err)
	}
	if n := readTotal(path); n != 100000 {
		t.Fatalf("before: %d", n)
	}
	m, i, err := s.Lookup(env.Lists[0].ID, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.CountRead(i-len(env.Recipients), netip.MustParseAddr("192.0.2.1"), time.Now()); err != nil {
		t.Fatal(err)
	}
	if n := readTotal(path); n != 100001 {
		t.Fatalf("an older counter of 100000 became %d after one more count, want 100001", n)
	}
	if fi, _ := os.Stat(path); fi.Size() != int64(readsHeader+8) {
		t.Fatalf("rewritten as %d octets, want the current form with one address", fi.Size())
	}
}
