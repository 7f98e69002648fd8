package store

import (
	"os"
	"testing"
	"time"
)

// TestHandOffRecord: the hand-offs of a message are kept per transaction,
// survive a torn last line (a crash mid-append), find the transaction that
// took a recipient by its domain and time, and go with the message.
func TestHandOffRecord(t *testing.T) {
	_, a := newAccount(t)
	env, err := inject(t, a, submission(t), "body", Limits{})
	if err != nil {
		t.Fatal(err)
	}
	m, err := a.Open(env.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	t0 := time.Unix(1_700_000_000, 0)
	if err := m.AddHandOff(HandOff{At: t0, Domain: "example.net", Relay: "relay.test:25", Reply: "2.0.0 Ok: queued as ABC\r\n\x1b[31m"}); err != nil {
		t.Fatal(err)
	}
	// A crash in the middle of the next append.
	f, _ := os.OpenFile(a.handOffPath(env.ID), os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString("handoff 1700000100 example.net other.test:25 \"torn")
	f.Close()
	if hs, _ := a.HandOffs(env.ID); len(hs) != 1 {
		t.Fatalf("a torn line read as a record: %+v", hs)
	}
	if err := m.AddHandOff(HandOff{At: t0.Add(time.Hour), Domain: "example.net", Relay: "new.test:587", Reply: "queued as DEF"}); err != nil {
		t.Fatal(err)
	}
	hs, err := a.HandOffs(env.ID)
	if err != nil || len(hs) != 2 {
		t.Fatalf("HandOffs: %+v, %v", hs, err)
	}
	if hs[0].Reply != "2.0.0 Ok: queued as ABC\r\n\x1b[31m" || hs[1].Relay != "new.test:587" {
		t.Fatalf("read back %+v", hs)
	}
	if h, ok := HandOffOf(hs, "EXAMPLE.net", t0.Add(time.Minute)); !ok || h.Relay != "relay.test:25" {
		t.Fatalf("the first transaction's recipient: %+v %v", h, ok)
	}
	if h, ok := HandOffOf(hs, "example.net", t0.Add(2*time.Hour)); !ok || h.Relay != "new.test:587" {
		t.Fatalf("the second transaction's recipient: %+v %v", h, ok)
	}
	if _, ok := HandOffOf(hs, "other.example", t0.Add(2*time.Hour)); ok {
		t.Fatal("a record for another domain")
	}
	if err := m.AddHandOff(HandOff{At: t0, Domain: "a b", Relay: "x:25"}); err == nil {
		t.Fatal("a domain with a space recorded")
	}
	a.removeStatus(env.ID)
	if _, err := os.Stat(a.handOffPath(env.ID)); !os.IsNotExist(err) {
		t.Fatalf("the record outlived its status: %v", err)
	}
}
