package inbox

import (
	"os"
	"path/filepath"
	"testing"
)

// TestHeld: entries move between the pending queue and the held box under
// their names; a re-send of a held entry, held again, stays one entry;
// marks outlive the moves and are pruned with their entries.
func TestHeld(t *testing.T) {
	b := testInbox(t)
	if h, err := b.Held(); err != nil || len(h) != 0 {
		t.Fatalf("no held box yet: %v %v", h, err)
	}
	e1 := b.add(t, "127.0.0.1:1", 1, 10, 0)
	e2 := b.add(t, "127.0.0.1:1", 2, 10, 0)
	count := func(want int, box string) {
		t.Helper()
		l, err := b.pending.List(box, 1<<30)
		if err != nil || len(l) != want {
			t.Fatalf("%s: %d entries (%v), want %d", box, len(l), err, want)
		}
	}
	if err := b.Hold(e1); err != nil {
		t.Fatal(err)
	}
	count(1, "pending")
	count(1, "held")
	if err := b.pending.Put("pending", &e1.N); err != nil { // the store re-sends it
		t.Fatal(err)
	}
	if err := b.Hold(e1); err != nil {
		t.Fatal(err)
	}
	count(1, "pending")
	count(1, "held")
	if b.Accepted(e1) {
		t.Fatal("accepted before Accept")
	}
	if err := b.Accept(e1); err != nil || !b.Accepted(e1) {
		t.Fatalf("Accept: %v", err)
	}
	count(2, "pending")
	count(0, "held")
	if err := b.Hold(e2); err != nil {
		t.Fatal(err)
	}
	if err := b.Mark("noticed", e2); err != nil || !b.Marked("noticed", e2) {
		t.Fatalf("Mark: %v", err)
	}
	if err := b.DropHeld(e2); err != nil {
		t.Fatal(err)
	}
	count(0, "held")
	b.PruneMarks("noticed", map[string]bool{})
	b.PruneMarks("accepted", map[string]bool{e1.Name: true})
	if b.Marked("noticed", e2) || !b.Accepted(e1) {
		t.Error("PruneMarks removed the wrong marks")
	}
	if err := b.Release(e2); err == nil {
		t.Error("released an entry that is not held")
	}
	if ents, _ := os.ReadDir(filepath.Join(b.pending.Dir, ".tmp")); len(ents) != 0 {
		t.Errorf("debris: %v", ents)
	}
}
