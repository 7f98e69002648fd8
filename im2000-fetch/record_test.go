package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"im2000/lib/agent"
	"im2000/lib/msgid"
	"im2000/lib/wire/rnaqp"
	"im2000/lib/wire/rnasp"
)

func entryWithID(id byte) agent.Entry {
	return agent.Entry{N: rnaqp.NotificationAndLocalData{Notification: rnasp.Notification{ID: msgid.ID{id}, Sender: "a@b.example"}}}
}

// TestRecord: the delivered record is read once, kept in memory (a key
// written to the file behind its back is not seen), and pruned of the
// lines older than maxlifetime whose entries are not pending.
func TestRecord(t *testing.T) {
	f := &fetcher{maildir: t.TempDir()}
	if err := f.lock(); err != nil {
		t.Fatal(err)
	}
	defer f.lockFile.Close()
	if err := f.readRecord(); err != nil {
		t.Fatal(err)
	}
	es := []agent.Entry{entryWithID(1), entryWithID(2), entryWithID(3)}
	for _, e := range es {
		if err := f.markDelivered(agent.Key(&e.N)); err != nil {
			t.Fatal(err)
		}
	}
	nine := entryWithID(9)
	behind := agent.Key(&nine.N)
	fh, _ := os.OpenFile(f.recordPath(), os.O_APPEND|os.O_WRONLY, 0)
	fh.WriteString(behind + "\n")
	fh.Close()
	if !f.delivered(agent.Key(&es[1].N)) || f.delivered(behind) {
		t.Error("the record is not the one in memory")
	}
	if err := f.pruneRecord(nil, time.Hour); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(f.recordPath()); strings.Count(string(b), "\n") != 4 {
		t.Errorf("young lines pruned: %q", b)
	}
	f.record[agent.Key(&es[0].N)] -= 7200 // delivered two hours ago
	f.record[agent.Key(&es[1].N)] -= 7200
	if err := f.pruneRecord(es[1:2], time.Hour); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(f.recordPath())
	if strings.Contains(string(b), agent.Key(&es[0].N)) || !strings.Contains(string(b), agent.Key(&es[1].N)) ||
		!strings.Contains(string(b), agent.Key(&es[2].N)) || strings.Count(string(b), "\n") != 2 {
		t.Errorf("pruned record %q, want the pending old entry's and the young one's", b)
	}
	g := &fetcher{maildir: f.maildir}
	if err := g.readRecord(); err != nil || !g.delivered(agent.Key(&es[1].N)) || g.delivered(agent.Key(&es[0].N)) || g.delivered(behind) {
		t.Errorf("the record read again: %v", err)
	}
}

// TestLock: a second run's lock fails at once, saying why.
func TestLock(t *testing.T) {
	dir := t.TempDir()
	f, g := &fetcher{maildir: dir}, &fetcher{maildir: dir}
	if err := f.lock(); err != nil {
		t.Fatal(err)
	}
	err := g.lock()
	if !errors.Is(err, errLocked) || !strings.Contains(err.Error(), filepath.Join(dir, ".im2000", "lock")) {
		t.Errorf("a second lock: %v", err)
	}
	f.lockFile.Close()
	if err := g.lock(); err != nil {
		t.Errorf("the lock after the first run: %v", err)
	}
	g.lockFile.Close()
}
