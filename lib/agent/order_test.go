package agent

import (
	"os"
	"path/filepath"
	"testing"

	"im2000/lib/wire/rnaqp"
)

// TestListInWrittenOrder: the notifications of one batch, written in a
// row within one tick of the kernel's file clock, are listed in the order
// they were written (imapd numbers its messages in that order).
func TestListInWrittenOrder(t *testing.T) {
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "bob"), 0o700)
	s, err := Open(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	var ns []*rnaqp.NotificationAndLocalData
	for i := range 50 {
		ns = append(ns, junk(i))
	}
	for i, err := range s.PutAll("bob", ns, nil) {
		if err != nil {
			t.Fatalf("notification %d: %v", i, err)
		}
	}
	got, err := s.List("bob", 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(ns) {
		t.Fatalf("listed %d of %d", len(got), len(ns))
	}
	for i, e := range got {
		if e.N.Notification.ID != ns[i].Notification.ID {
			t.Fatalf("entry %d is notification %q, want %q", i, e.N.Notification.ID[:], ns[i].Notification.ID[:])
		}
	}
}
