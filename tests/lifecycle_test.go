package tests

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"im2000/lib/addr"
	"im2000/lib/msgid"
	"im2000/lib/store"
	"im2000/lib/wire"
	"im2000/lib/wire/msrap"
)

// commitFor puts one message to rcpts with the given lifetime into the
// archive, and returns its envelope.
func commitFor(t *testing.T, a *store.Account, life time.Duration, lists []string, rcpts ...string) *store.Envelope {
	t.Helper()
	from, _ := addr.Parse("alice@example.org")
	var to []addr.Mailbox
	for _, r := range rcpts {
		m, err := addr.Parse(r)
		if err != nil {
			t.Fatal(err)
		}
		to = append(to, m)
	}
	d, err := a.NewDraft(store.Submission{Sender: from, Lifetime: life, Recipients: to, Lists: lists}, store.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(d, "Subject: lifecycle\r\n\r\n%s\r\n", strings.Repeat("body ", 200))
	env, err := d.Commit()
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// storeTraces maps every identifier of envs to the store's files that name
// it or point at it.
func storeTraces(t *testing.T, root string, envs []*store.Envelope) map[msgid.ID][]string {
	owner := map[string]msgid.ID{}
	for _, env := range envs {
		owner[env.ID.String()] = env.ID
		for _, r := range env.Recipients {
			owner[r.ID.String()] = env.ID
		}
		for _, l := range env.Lists {
			owner[l.ID.String()] = env.ID
		}
	}
	out := map[msgid.ID][]string{}
	filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		names := []string{filepath.Base(path)}
		if target, err := os.Readlink(path); err == nil {
			names = append(names, filepath.Base(target))
		}
		for _, n := range names {
			for _, part := range strings.Split(n, ".") {
				if id, ok := owner[part]; ok {
					out[id] = append(out[id], path)
					return nil
				}
			}
		}
		return nil
	})
	return out
}

// TestLifecycle: messages with a short lifetime are reaped by notifyd with
// every index entry, Track (im2000-status) says they are gone, and the
// quota has room again; a long-lived message stays.
func TestLifecycle(t *testing.T) {
	bob := newAgentHostFor(t, "listener", "example.net", "", "bob")
	e, a := queueStore(t, map[string]string{"example.net": bob.rnasp},
		map[string]string{"reapinterval": "1", "retrybase": "1"})
	e.setConf("lists/life", "alice")
	kept := commitFor(t, a, 24*time.Hour, nil, "bob@example.net")
	var short []*store.Envelope
	for i := 0; i < 20; i++ {
		var lists []string
		if i%4 == 0 {
			lists = []string{"life"}
		}
		short = append(short, commitFor(t, a, 3*time.Second, lists, "bob@example.net", "carol@example.com"))
	}
	used, err := a.Usage()
	if err != nil {
		t.Fatal(err)
	}
	e.setConf("quota", strconv.FormatInt(used+500, 10))
	if r := e.run(strings.Repeat("y", 2000)+"\n", "im2000-inject", "bob@example.net"); r.code != 111 || !strings.Contains(r.stderr, "quota") {
		t.Fatalf("over quota before reaping: exit %d, %q", r.code, r.stderr)
	}
	tr := storeTraces(t, e.store, short)
	if len(tr) != len(short) || len(tr[short[0].ID]) < 6 {
		t.Fatalf("the messages left too few traces to prove anything: %d of %d, %v", len(tr), len(short), tr[short[0].ID])
	}
	_, logs := daemonEnv(t, e.vars, "", filepath.Join(bin, "im2000-notifyd"))
	for start := time.Now(); ; time.Sleep(200 * time.Millisecond) {
		ids, _ := a.Messages()
		if len(ids) == 1 && ids[0] == kept.ID {
			break
		}
		if time.Since(start) > time.Minute {
			t.Fatalf("not reaped a minute on: %d messages left\n%s", len(ids), logs.String())
		}
	}
	if tr := storeTraces(t, e.store, short); len(tr) != 0 {
		for id, files := range tr {
			t.Fatalf("%s left %v", id, files)
		}
	}
	for _, env := range short[:3] {
		if _, err := a.Status(env.ID); !errors.Is(err, store.ErrNoSuch) {
			t.Fatalf("status of a reaped message: %v", err)
		}
		if r := e.run("", "im2000-status", env.ID.String()); r.code != 100 || !strings.Contains(r.stderr, "no such message") {
			t.Fatalf("im2000-status of a reaped message: exit %d, %q", r.code, r.stderr)
		}
	}
	if r := e.run(strings.Repeat("y", 2000)+"\n", "im2000-inject", "bob@example.net"); r.code != 0 {
		t.Fatalf("no room after reaping: exit %d, %q", r.code, r.stderr)
	}
	if tr := storeTraces(t, e.store, []*store.Envelope{kept}); len(tr[kept.ID]) < 3 {
		t.Fatalf("the live message lost traces: %v", tr[kept.ID])
	}
	if !strings.Contains(logs.String(), "im2000-notifyd: info: reaped: ") {
		t.Fatalf("no reaping logged:\n%s", logs.String())
	}
}

// TestReapKilled SIGKILLs notifyd again and again while it reaps hundreds
// of expired messages, and checks after every kill that each message is
// whole (message, status, queue link, recipient and list links) unless it
// is marked as being removed, or is gone with all its traces; at the end
// all are gone and the quota counter agrees with the archive.
func TestReapKilled(t *testing.T) {
	n := 250
	if testing.Short() {
		n = 100
	}
	e, a := queueStore(t, nil, map[string]string{"reapinterval": "1"})
	e.setConf("lists/life", "alice")
	var envs []*store.Envelope
	for i := 0; i < n; i++ {
		var lists []string
		if i%5 == 0 {
			lists = []string{"life"}
		}
		envs = append(envs, commitFor(t, a, time.Second, lists, "bob@example.net", "carol@example.com", "dave@example.com"))
	}
	// notifyd takes the queue links of expired messages off the queue
	// itself, so they are not counted.
	indexed := func(files []string) int {
		n := 0
		for _, f := range files {
			if d := filepath.Base(filepath.Dir(f)); d != "todo" && d != "queue" {
				n++
			}
		}
		return n
	}
	whole := map[msgid.ID]int{}
	for id, files := range storeTraces(t, e.store, envs) {
		whole[id] = indexed(files)
	}
	time.Sleep(1100 * time.Millisecond) // every one expired
	notifyd := filepath.Join(bin, "im2000-notifyd")
	kills := 0
	// The first reaping starts a second after start: kill within it. How
	// long the whole reaping takes depends on the machine, so the window
	// for the kill starts small and widens only after a run that reaped
	// nothing: a fast machine still gets many kills mid-way.
	window, before := 20, n
	for {
		nd, _ := daemonEnv(t, e.vars, "", notifyd)
		time.Sleep(time.Duration(1000+rand.IntN(window)) * time.Millisecond)
		nd.Process.Kill()
		nd.Wait()
		kills++
		left := storeTraces(t, e.store, envs)
		if len(left) == before {
			window += 20
		}
		before = len(left)
		marked := 0
		for id, files := range left {
			_, err := os.Lstat(filepath.Join(e.store, "alice", "reap", id.String()))
			if err == nil {
				marked++
				continue // being removed: a rerun finishes it
			}
			if indexed(files) != whole[id] {
				t.Fatalf("after kill %d: %s unmarked with %d of its %d files: %v", kills, id, len(files), whole[id], files)
			}
		}
		if marked > 1 {
			t.Fatalf("after kill %d: %d removals in progress at once", kills, marked)
		}
		if len(left) == 0 {
			break
		}
		if kills > 500 {
			t.Fatalf("%d messages left after %d kills", len(left), kills)
		}
	}
	if kills < 5 {
		t.Fatalf("only %d kills: too few to prove anything", kills)
	}
	if u, err := a.Usage(); err != nil || u != 0 {
		t.Fatalf("usage after reaping everything: %d, %v", u, err)
	}
	t.Logf("%d messages reaped across %d SIGKILLs of notifyd", n, kills)
}

// TestSilencesGrouped has 48 MSRAP sessions to one im2000-retrieved in
// listener mode silence, unpin and retrieve 2,000 recipients of one
// message at once: retrieved writes the changes that arrive together in
// one journal append (im2000-retrieved/batch.go). Every change of every
// recipient must be in the status at the end, and the status must be
// whole for a fresh reader.
func TestSilencesGrouped(t *testing.T) {
	const n, sessions = 2000, 48
	e := newEnv(t, "alice")
	e.setConf("sessionsperaddr", "0")
	st, err := store.Open(e.store)
	if err != nil {
		t.Fatal(err)
	}
	a, err := st.Account("alice")
	if err != nil {
		t.Fatal(err)
	}
	var rcpts []string
	for i := 0; i < n; i++ {
		rcpts = append(rcpts, fmt.Sprintf("r%d@example.net", i))
	}
	env := commitFor(t, a, 24*time.Hour, nil, rcpts...)
	addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	_, logs := daemonEnv(t, e.vars, addr, filepath.Join(bin, "im2000-retrieved"), "-l", addr, "-c", "100")
	var wg sync.WaitGroup
	for w := 0; w < sessions; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			c := dialProto(t, msrap.Protocol, addr)
			for i := w; i < n; i += sessions {
				id := env.Recipients[i].ID
				cmds := []wire.Body{&msrap.Silence{ID: id}, &msrap.UnPin{ID: id}}
				if i%2 == 0 { // half read first, as a fetch does
					cmds = append([]wire.Body{&msrap.Retrieve{ID: id, Type: msrap.HeadersOnly}}, cmds...)
				}
				for _, cmd := range cmds {
					if r, err := c.Call(cmd); err != nil || r.Status != 0 {
						t.Errorf("recipient %d, %T: %v %v", i, cmd, r, err)
						return
					}
				}
			}
		}(w)
	}
	wg.Wait()
	if t.Failed() {
		t.Fatalf("retrieved:\n%s", logs.String())
	}
	s, err := a.Status(env.ID)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range s.Recipients {
		if r.Notification != store.Silenced || r.Pinned || r.Read != store.ReadAll {
			t.Fatalf("recipient %d of %d: %+v: a change was lost", i, n, r)
		}
	}
}
