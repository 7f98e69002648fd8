package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"im2000/lib/addr"
	"im2000/lib/conf"
	"im2000/lib/msgid"
	"im2000/lib/session"
	"im2000/lib/store"
	"im2000/lib/wire/rnasp"
)

// testRoot is the store of the last queued.
var testRoot string

// queued commits a message to n recipients at example.net and loads it as
// the intake would.
func queued(t *testing.T, n int) (*store.Account, loaded) {
	t.Helper()
	root := t.TempDir()
	testRoot = root
	s, err := store.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	a, err := s.Account("alice")
	if err != nil {
		t.Fatal(err)
	}
	from, _ := addr.Parse("alice@example.org")
	var to []addr.Mailbox
	for i := 0; i < n; i++ {
		to = append(to, addr.Mailbox{Local: fmt.Sprintf("r%d", i), Domain: "example.net"})
	}
	d, err := a.NewDraft(store.Submission{Sender: from, Lifetime: time.Hour, Recipients: to}, store.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(d, "Subject: x\r\n\r\nx\r\n")
	env, err := d.Commit()
	if err != nil {
		t.Fatal(err)
	}
	l, ok := loadMessage(a, env.ID, time.Now())
	if !ok || l.msg == nil || len(l.entries) != n {
		t.Fatalf("load: %v %+v", ok, l)
	}
	for _, e := range l.entries {
		e.msg = l.msg
	}
	return a, l
}

// results pairs entries with outcomes as a worker reports them.
func results(es []*entry, out []outcome, end time.Time) []result {
	var rs []result
	for i, e := range es {
		rs = append(rs, result{e: e, domain: "example.net", rna: "127.0.0.1:1", out: out[i], end: end})
	}
	return rs
}

func testConfig() *config {
	return &config{retryBase: time.Minute, retryMax: time.Hour, resend: 2 * time.Hour, timeout: time.Second, concurrency: 1}
}

// TestRecordOutcomes: each outcome becomes the state, attempt count and
// next attempt the man page promises, timed from the end of the attempt;
// a recipient silenced by another program meanwhile keeps its silence.
func TestRecordOutcomes(t *testing.T) {
	a, l := queued(t, 7)
	id := l.msg.id
	// im2000-retrieved silences recipient 6 while the batch is out.
	if err := a.Update(id, func(_ *store.Envelope, st *store.Status) error {
		st.Recipients[6].Notification = store.Silenced
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	out := []outcome{{state: store.Notifying}, {state: store.NoUser}, {full: true, state: store.Notifying},
		{state: store.Refused}, {state: store.NoServer}, {state: store.ProtocolError}, {state: store.Notifying}}
	end := time.Now().Add(10 * time.Minute) // an attempt that took long
	cfg := testConfig()
	kept, dropped := recordMessage(cfg, l.msg, results(l.entries, out, end))
	if len(kept) != 4 || len(dropped) != 3 {
		t.Fatalf("kept %d, dropped %d", len(kept), len(dropped))
	}
	st, err := a.Status(id)
	if err != nil {
		t.Fatal(err)
	}
	want := []store.Notification{store.Notifying, store.NoUser, store.Unprocessed, store.Refused, store.NoServer, store.ProtocolError, store.Silenced}
	for i, r := range st.Recipients {
		if r.Notification != want[i] {
			t.Errorf("recipient %d: %v, want %v", i, r.Notification, want[i])
		}
		wantAttempts := int64(1)
		if i == 6 {
			wantAttempts = 0
		}
		if r.Attempts != wantAttempts {
			t.Errorf("recipient %d: %d attempts", i, r.Attempts)
		}
	}
	if got := st.Recipients[0].Next.Sub(end); got < cfg.resend-time.Second || got > cfg.resend+time.Second {
		t.Errorf("notifying: next in %v after the end, want resend %v", got, cfg.resend)
	}
	for _, i := range []int{2, 4, 5} {
		if got := st.Recipients[i].Next.Sub(end); got < cfg.retryBase/2-time.Second || got > cfg.retryBase*3/2+time.Second {
			t.Errorf("recipient %d: next in %v after the end, want retrybase ±50%%", i, got)
		}
	}
	for _, i := range []int{1, 3} {
		if !st.Recipients[i].Next.IsZero() {
			t.Errorf("recipient %d failed for good but has a next attempt", i)
		}
	}
	for _, r := range kept {
		e := r.e
		// The sidecar keeps whole seconds.
		if d := time.Duration(e.due - st.Recipients[e.index].Next.UnixNano()); d < 0 || d >= time.Second {
			t.Errorf("entry %d due %v, sidecar %v", e.index, time.Unix(0, e.due), st.Recipients[e.index].Next)
		}
	}
	// loadMessage leaves the link in todo/ (the intake moves it): the
	// message is not finished, so it stays.
	if todo, _ := a.Todo(); len(todo) != 1 {
		t.Errorf("a message with recipients left is off the queue")
	}
}

// TestRecordFinishes: once every recipient is final the message leaves
// the queue.
func TestRecordFinishes(t *testing.T) {
	a, l := queued(t, 2)
	kept, dropped := recordMessage(testConfig(), l.msg, results(l.entries, []outcome{{state: store.NoUser}, {state: store.Refused}}, time.Now()))
	if len(kept) != 0 || len(dropped) != 2 {
		t.Fatalf("kept %d, dropped %d", len(kept), len(dropped))
	}
	if todo, _ := a.Todo(); len(todo) != 0 {
		t.Error("a finished message is still queued")
	}
}

// TestCheck: a batch is checked against the disk before it goes: a
// cancelled message and a silenced recipient are not notified.
func TestCheck(t *testing.T) {
	a, l := queued(t, 2)
	a2, l2 := queued(t, 1)
	if err := a.Update(l.msg.id, func(_ *store.Envelope, st *store.Status) error {
		st.Recipients[0].Notification = store.Silenced
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := a2.Cancel(l2.msg.id); err != nil {
		t.Fatal(err)
	}
	send, deferred, dropped := check(testConfig(), append(l.entries, l2.entries...), time.Now())
	if len(send) != 1 || send[0].index != 1 || len(dropped) != 2 || len(deferred) != 0 {
		t.Fatalf("send %d, deferred %d, dropped %d", len(send), len(deferred), len(dropped))
	}
	// Past its lifetime, nothing goes, and the message leaves the queue.
	send, deferred, dropped = check(testConfig(), l.entries, time.Now().Add(2*time.Hour))
	if len(send) != 0 || len(dropped) != 2 || len(deferred) != 0 {
		t.Fatalf("expired: send %d, deferred %d, dropped %d", len(send), len(deferred), len(dropped))
	}
	if todo, _ := a.Todo(); len(todo) != 0 {
		t.Error("an expired message is still queued")
	}
}

// TestCheckSilencedLeavesQueue: when the check finds every recipient
// silenced, the message leaves queue/ (the usual end of a message's
// notifications: notifyd learns of the silence only here).
func TestCheckSilencedLeavesQueue(t *testing.T) {
	a, l := queued(t, 2)
	if err := a.Update(l.msg.id, func(_ *store.Envelope, st *store.Status) error {
		st.Recipients[0].Notification = store.Silenced
		st.Recipients[1].Notification = store.NoUser
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	send, _, dropped := check(testConfig(), l.entries, time.Now())
	if len(send) != 0 || len(dropped) != 2 {
		t.Fatalf("send %d, dropped %d", len(send), len(dropped))
	}
	if todo, _ := a.Todo(); len(todo) != 0 {
		t.Error("a message silenced by all is still queued")
	}
}

// TestCheckUnreadable: a sidecar that cannot be read defers the batch,
// backing off, rather than notifying blind or dropping it.
func TestCheckUnreadable(t *testing.T) {
	_, l := queued(t, 1)
	path := filepath.Join(testRoot, "alice", "status", l.msg.id.String())
	if err := os.WriteFile(path, []byte("junk\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig()
	for i := 1; i <= 3; i++ {
		now := time.Now()
		send, deferred, dropped := check(cfg, l.entries, now)
		if len(send) != 0 || len(deferred) != 1 || len(dropped) != 0 {
			t.Fatalf("send %d, deferred %d, dropped %d", len(send), len(deferred), len(dropped))
		}
		base := cfg.retryBase << (i - 1)
		if d := time.Duration(deferred[0].due - now.UnixNano()); d < base/2 || d > base*3/2 {
			t.Errorf("try %d deferred by %v, want %v ±50%%", i, d, base)
		}
	}
}

func TestCallFailure(t *testing.T) {
	for _, c := range []struct {
		err  error
		want store.Notification
	}{
		{fmt.Errorf("x: %w", session.ErrProtocol), store.ProtocolError},
		{&session.StatusError{Proto: rnasp.Protocol, Status: rnasp.Protocol.Status.Shutdown}, store.NoServer},
		{&session.StatusError{Proto: rnasp.Protocol, Status: rnasp.Protocol.Status.Malformed}, store.ProtocolError},
		{os.ErrDeadlineExceeded, store.NoServer},
		{io.ErrUnexpectedEOF, store.NoServer},
		{errors.New("connection reset"), store.NoServer},
	} {
		if got := callFailure(c.err); got != c.want {
			t.Errorf("%v: %v, want %v", c.err, got, c.want)
		}
	}
}

// TestSettingsBounded: a time setting over a year is refused (it would
// overflow a duration and resend in a tight loop), and a good one is read.
func TestSettingsBounded(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "storelocation"), []byte("127.0.0.1:9\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "resend"), []byte("10000000000\n"), 0o644)
	if _, err := load(conf.Dir(dir)); err == nil {
		t.Fatal("resend of 10^10 seconds accepted")
	}
	os.WriteFile(filepath.Join(dir, "resend"), []byte("7200\n"), 0o644)
	c, err := load(conf.Dir(dir))
	if err != nil || c.resend != 2*time.Hour {
		t.Fatalf("%v %v", c, err)
	}
}

// TestIntakeRetriesQueue: a queued message that cannot be loaded at start
// (a sidecar unreadable for a moment) is loaded at a later scan, not
// forgotten until the next restart.
func TestIntakeRetriesQueue(t *testing.T) {
	a, l := queued(t, 1)
	if err := a.Take(l.msg.id); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(testRoot, "alice", "status", l.msg.id.String())
	good, _ := os.ReadFile(path)
	os.WriteFile(path, []byte("junk\n"), 0o600)
	s, _ := store.Open(testRoot)
	out := make(chan []loaded, 10)
	in := &intake{st: s, out: out, queueRead: map[string]bool{}, retry: map[string]map[msgid.ID]struct{}{}}
	in.scan([]string{"alice"})
	if len(out) != 0 {
		t.Fatal("a message with a broken sidecar was loaded")
	}
	os.WriteFile(path, good, 0o600)
	in.scan([]string{"alice"})
	if len(out) != 1 {
		t.Fatal("not loaded at the next scan")
	}
	if got := <-out; len(got) != 1 || got[0].msg.id != l.msg.id {
		t.Fatalf("loaded %+v", got)
	}
	in.scan([]string{"alice"})
	if len(out) != 0 {
		t.Fatal("loaded twice")
	}
}
