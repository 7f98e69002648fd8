package inbox

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"im2000/lib/addr"
	"im2000/lib/agent"
)

var alice = addr.Mailbox{Local: "alice", Domain: "example.org"}

// TestHeld: entries move between the pending queue and the held box under
// their names; a re-send of a held entry, held again, stays one entry;
// marks outlive the moves and are pruned with their entries.
func TestHeld(t *testing.T) {
	b := testInbox(t)
	if h, err := b.Held(10); err != nil || len(h) != 0 {
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
	if err := b.Hold([]agent.Entry{e1}, []addr.Mailbox{alice}); err != nil {
		t.Fatal(err)
	}
	count(1, "pending")
	count(1, "held")
	if err := b.pending.Put("pending", &e1.N); err != nil { // the store re-sends it
		t.Fatal(err)
	}
	if err := b.Hold([]agent.Entry{e1}, []addr.Mailbox{alice}); err != nil {
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
	if err := b.Hold([]agent.Entry{e2}, []addr.Mailbox{alice}); err != nil {
		t.Fatal(err)
	}
	if err := b.Mark("noticed", e2); err != nil || !b.Marked("noticed", e2) {
		t.Fatalf("Mark: %v", err)
	}
	if err := b.DropHeld([]agent.Entry{e2}); err != nil {
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
	if ents, _ := os.ReadDir(filepath.Join(b.pending.Dir, senderBox)); len(ents) != 0 {
		t.Errorf("sender files of entries gone: %v", ents)
	}
	if ents, _ := os.ReadDir(filepath.Join(b.pending.Dir, ".tmp")); len(ents) != 0 {
		t.Errorf("debris: %v", ents)
	}
}

// TestHeldStoredSender: a held entry is listed with the sender verified
// when it was held, with no binding check, so a domain whose DNS stops answering
// costs nothing; an entry without a stored sender (a crash between the
// two writes) is dropped.
func TestHeldStoredSender(t *testing.T) {
	b := testInbox(t)
	e1 := b.add(t, "127.0.0.1:1", 1, 10, 0)
	e2 := b.add(t, "127.0.0.1:1", 2, 10, 0)
	list := addr.Mailbox{Local: "news", Domain: "lists.example"}
	if err := b.Hold([]agent.Entry{e1, e2}, []addr.Mailbox{alice, list}); err != nil {
		t.Fatal(err)
	}
	// No cached senders and no binding checker: a binding check panics.
	b.senders, b.bind = map[string]addr.Mailbox{}, nil
	os.Remove(filepath.Join(b.pending.Dir, senderBox, e2.Name))
	h, err := b.Held(10)
	if err != nil || len(h) != 1 || h[0].Name != e1.Name || h[0].Sender != alice {
		t.Fatalf("Held: %+v %v", h, err)
	}
	if l, _ := b.pending.List(heldBox, 1<<30); len(l) != 1 {
		t.Errorf("the entry without a sender is still held: %d", len(l))
	}
}

// TestHeldBounds: entries older than maxlifetime and the oldest beyond
// maxheld leave the held box (ScanHeld says so without changing it, Held
// drops them), so the box, and what a run reads of it, stays bounded.
func TestHeldBounds(t *testing.T) {
	b := testInbox(t) // maxlifetime: an hour
	old := b.add(t, "127.0.0.1:1", 1, 10, 2*time.Hour)
	var es []agent.Entry
	var ss []addr.Mailbox
	for i := range 5 {
		e := b.add(t, "127.0.0.1:1", byte(10+i), 10, time.Duration(5-i)*time.Minute)
		es, ss = append(es, e), append(ss, alice)
	}
	if err := b.Hold(append([]agent.Entry{old}, es...), append([]addr.Mailbox{alice}, ss...)); err != nil {
		t.Fatal(err)
	}
	// List goes by modification time: make it the notification's.
	for i, e := range append([]agent.Entry{old}, es...) {
		mt := time.Now().Add(-time.Duration(10-i) * time.Minute)
		os.Chtimes(filepath.Join(b.pending.Dir, heldBox, e.Name), mt, mt)
	}
	keep, drop, err := b.ScanHeld(3)
	if err != nil || len(keep) != 3 || len(drop) != 3 {
		t.Fatalf("ScanHeld(3): keep %d, drop %d, %v", len(keep), len(drop), err)
	}
	why := map[string]string{}
	for _, d := range drop {
		why[d.Name] = d.Why
	}
	if !strings.Contains(why[old.Name], "maxlifetime") || !strings.Contains(why[es[0].Name], "maxheld (3)") || !strings.Contains(why[es[1].Name], "maxheld (3)") {
		t.Errorf("drops: %v", why)
	}
	for i, k := range keep {
		if k.Name != es[i+2].Name {
			t.Errorf("kept %d: %s, want the newest three", i, k.Name)
		}
	}
	if l, _ := b.pending.List(heldBox, 1<<30); len(l) != 6 {
		t.Errorf("ScanHeld changed the box: %d", len(l))
	}
	if h, err := b.Held(3); err != nil || len(h) != 3 {
		t.Fatalf("Held(3): %d %v", len(h), err)
	}
	if l, _ := b.pending.List(heldBox, 1<<30); len(l) != 3 {
		t.Errorf("after Held(3): %d held", len(l))
	}
	if ents, _ := os.ReadDir(filepath.Join(b.pending.Dir, senderBox)); len(ents) != 3 {
		t.Errorf("sender files: %d, want 3", len(ents))
	}
}
