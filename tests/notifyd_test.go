package tests

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"im2000/lib/addr"
	"im2000/lib/msgid"
	"im2000/lib/store"
)

// queueStore is a store with notifyd's settings and no servers: the tests
// here commit messages with lib/store, as inject does, and watch notifyd.
func queueStore(t *testing.T, routes map[string]string, settings map[string]string) (*env, *store.Account) {
	e := newEnv(t, "alice")
	var r strings.Builder
	for domain, where := range routes {
		fmt.Fprintf(&r, "_rnasp._tcp.%s %s\n", domain, where)
	}
	e.setConf("routes", r.String())
	e.setConf("storelocation", "127.0.0.1:9")
	for k, v := range settings {
		e.setConf(k, v)
	}
	s, err := store.Open(e.store)
	if err != nil {
		t.Fatal(err)
	}
	a, err := s.Account("alice")
	if err != nil {
		t.Fatal(err)
	}
	return e, a
}

// commit puts one message to rcpts into the archive.
func commit(t *testing.T, a *store.Account, rcpts ...string) msgid.ID {
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
	d, err := a.NewDraft(store.Submission{Sender: from, Lifetime: 24 * time.Hour, Recipients: to}, store.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(d, "Subject: test\r\n\r\nbody\r\n")
	env, err := d.Commit()
	if err != nil {
		t.Fatal(err)
	}
	return env.ID
}

// spooled counts the notifications an agent holds for account.
func spooled(h *agentHost, account string) int {
	ents, _ := os.ReadDir(filepath.Join(h.spool, account))
	return len(ents)
}

// tarpit accepts connections and never answers: a host that swallows
// packets, or a deliberate tarpit.
func tarpit(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	return l.Addr().String()
}

func stateOf(t *testing.T, a *store.Account, id msgid.ID, i int) store.Notification {
	st, err := a.Status(id)
	if err != nil {
		t.Fatal(err)
	}
	return st.Recipients[i].Notification
}

// TestHeadOfLine: one destination is a tarpit, another a working agent.
// Messages to the working one keep arriving while the tarpit holds its
// session, and the tarpit's recipients end as noserver (a timeout is not a
// protocol error), to be retried.
func TestHeadOfLine(t *testing.T) {
	const timeout = 10 * time.Second
	bob := newAgentHostFor(t, "listener", "example.net", "", "bob")
	e, a := queueStore(t, map[string]string{"example.net": bob.rnasp, "example.com": tarpit(t)},
		map[string]string{"timeout": "10", "retrybase": "1", "retrymax": "2"})
	nd, logs := daemonEnv(t, e.vars, "", filepath.Join(bin, "im2000-notifyd"))
	defer nd.Process.Signal(syscall.SIGTERM)

	first := commit(t, a, "carol@example.com", "bob@example.net")
	start := time.Now()
	var worst time.Duration
	for i := 1; i <= 5; i++ {
		// Each time, a message to the tarpit first, then one to bob.
		commit(t, a, "carol@example.com")
		commit(t, a, "bob@example.net")
		sent := time.Now()
		took := await(t, timeout/2, fmt.Sprintf("bob's notification %d", i), func() bool { return spooled(bob, "bob") >= i+1 })
		worst = max(worst, took)
		t.Logf("notification %d after %v", i, took)
		if time.Since(sent) > timeout/2 {
			t.Fatalf("notification %d took %v", i, time.Since(sent))
		}
		time.Sleep(300 * time.Millisecond)
	}
	if stateOf(t, a, first, 1) != store.Notifying {
		t.Errorf("bob's recipient state: %v", stateOf(t, a, first, 1))
	}
	if since := time.Since(start); since >= timeout {
		t.Fatalf("the working destination's messages took %v, as long as the tarpit's timeout", since)
	}
	await(t, 2*timeout, "the tarpit's recipient recorded", func() bool { return stateOf(t, a, first, 0) != store.Unprocessed })
	if got := stateOf(t, a, first, 0); got != store.NoServer {
		t.Errorf("tarpit recipient: %v, want noserver\n%s", got, logs)
	}
	t.Logf("worst arrival at the working agent while the tarpit held its session: %v (tarpit timeout %v)", worst, timeout)
}

// TestNotifydSignals: SIGHUP picks up a new route without a restart, and
// SIGALRM makes a deferred recipient go out at once rather than after its
// retry delay.
func TestNotifydSignals(t *testing.T) {
	bob := newAgentHostFor(t, "listener", "example.net", "", "bob")
	dead := fmt.Sprintf("127.0.0.1:%d", freePort(t)) // nothing listens
	e, a := queueStore(t, map[string]string{"example.net": dead}, map[string]string{"timeout": "5", "retrybase": "600", "retrymax": "600"})
	nd, logs := daemonEnv(t, e.vars, "", filepath.Join(bin, "im2000-notifyd"))
	id := commit(t, a, "bob@example.net")
	await(t, 10*time.Second, "the failed attempt recorded", func() bool { return stateOf(t, a, id, 0) == store.NoServer })

	e.setConf("routes", "_rnasp._tcp.example.net "+bob.rnasp+"\n")
	nd.Process.Signal(syscall.SIGHUP)
	await(t, 5*time.Second, "SIGHUP logged", func() bool { return strings.Contains(logs.String(), "SIGHUP: routes changed") })
	// Deferred for 600 s ±50%: nothing happens by itself.
	time.Sleep(time.Second)
	if spooled(bob, "bob") != 0 {
		t.Fatal("a deferred recipient went out before its time")
	}
	// A message committed now goes by the new route at once.
	id2 := commit(t, a, "bob@example.net")
	await(t, 5*time.Second, "the new message by the new route", func() bool { return spooled(bob, "bob") == 1 })
	if stateOf(t, a, id2, 0) != store.Notifying {
		t.Errorf("new message: %v", stateOf(t, a, id2, 0))
	}
	nd.Process.Signal(syscall.SIGALRM)
	await(t, 5*time.Second, "the deferred recipient after SIGALRM", func() bool { return spooled(bob, "bob") == 2 })
	await(t, 5*time.Second, "its state", func() bool { return stateOf(t, a, id, 0) == store.Notifying })
	if !strings.Contains(logs.String(), "SIGALRM: 1 deferred recipients due now") {
		t.Errorf("SIGALRM not logged:\n%s", logs)
	}
}
