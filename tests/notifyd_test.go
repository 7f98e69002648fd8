package tests

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"im2000/lib/addr"
	"im2000/lib/locate/locatetest"
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

// TestNotifydSignals: SIGHUP picks up a new route without a restart (the
// settings in force logged at start and after it; settings that do not
// load leave them, with a warning), and SIGALRM makes a deferred recipient
// go out at once rather than after its retry delay.
func TestNotifydSignals(t *testing.T) {
	bob := newAgentHostFor(t, "listener", "example.net", "", "bob")
	dead := fmt.Sprintf("127.0.0.1:%d", freePort(t)) // nothing listens
	e, a := queueStore(t, map[string]string{"example.net": dead}, map[string]string{"timeout": "5", "retrybase": "600", "retrymax": "600"})
	nd, logs := daemonEnv(t, e.vars, "", filepath.Join(bin, "im2000-notifyd"))
	settings := func() []string {
		return regexp.MustCompile(`(?m)^im2000-notifyd: info: settings: .*$`).FindAllString(logs.String(), -1)
	}
	await(t, 5*time.Second, "notifyd's settings line", func() bool { return len(settings()) == 1 })
	if s := settings()[0]; !strings.Contains(s, " retrybase=600 ") || !strings.Contains(s, " timeout=5 ") || !strings.Contains(s, " concurrency=10 ") {
		t.Errorf("notifyd's settings line: %s", s)
	}
	id := commit(t, a, "bob@example.net")
	await(t, 10*time.Second, "the failed attempt recorded", func() bool { return stateOf(t, a, id, 0) == store.NoServer })
	// Logged after it is recorded.
	await(t, 5*time.Second, "the attempt line of the failed attempt", func() bool {
		return regexp.MustCompile(`(?m)^im2000-notifyd: info: attempt: \S+ bob@example\.net example\.net noserver$`).MatchString(logs.String())
	})

	e.setConf("routes", "_rnasp._tcp.example.net "+bob.rnasp+"\n")
	nd.Process.Signal(syscall.SIGHUP)
	await(t, 5*time.Second, "SIGHUP logged", func() bool { return strings.Contains(logs.String(), "im2000-notifyd: info: SIGHUP: routes changed") })
	// Deferred for 600 s ±50%: nothing happens by itself.
	time.Sleep(time.Second)
	if spooled(bob, "bob") != 0 {
		t.Fatal("a deferred recipient went out before its time")
	}
	// A message committed now goes by the new route at once.
	id2 := commit(t, a, "bob@example.net")
	await(t, 5*time.Second, "the new message by the new route", func() bool { return spooled(bob, "bob") == 1 })
	await(t, 5*time.Second, "the new message recorded", func() bool { return stateOf(t, a, id2, 0) == store.Notifying })
	nd.Process.Signal(syscall.SIGALRM)
	await(t, 5*time.Second, "the deferred recipient after SIGALRM", func() bool { return spooled(bob, "bob") == 2 })
	await(t, 5*time.Second, "its state", func() bool { return stateOf(t, a, id, 0) == store.Notifying })
	if !strings.Contains(logs.String(), "im2000-notifyd: info: SIGALRM: 1 deferred recipients due now") {
		t.Errorf("SIGALRM not logged:\n%s", logs)
	}
	if n := len(settings()); n != 2 {
		t.Errorf("%d settings lines after one SIGHUP, want 2:\n%s", n, logs)
	}
	e.setConf("concurrency", "many")
	nd.Process.Signal(syscall.SIGHUP)
	await(t, 5*time.Second, "the warning for settings that do not load", func() bool {
		return strings.Contains(logs.String(), "im2000-notifyd: warning: SIGHUP: ") && strings.Contains(logs.String(), "concurrency: want a whole number")
	})
	if n := len(settings()); n != 2 {
		t.Errorf("a SIGHUP that did not load logged settings (%d lines):\n%s", n, logs)
	}
	id3 := commit(t, a, "bob@example.net")
	await(t, 5*time.Second, "a message after the failed SIGHUP, by the route in force", func() bool { return stateOf(t, a, id3, 0) == store.Notifying })
}

// TestNotifydKilled: 10,000 messages to two agents while notifyd is killed
// with SIGKILL at random moments and restarted. In the end every
// recipient is notified (each agent holds 10,000 notifications), every
// sidecar says so, and the queue holds every message, in queue/ and not
// todo/: nothing lost, nothing half-done.
func TestNotifydKilled(t *testing.T) {
	n := 10000
	if testing.Short() {
		n = 1000
	}
	bob := newAgentHostFor(t, "listener", "example.net", "", "bob")
	carol := newAgentHostFor(t, "listener", "example.com", "", "carol")
	e, a := queueStore(t, map[string]string{"example.net": bob.rnasp, "example.com": carol.rnasp},
		map[string]string{"retrybase": "1", "retrymax": "2", "timeout": "10"})
	notifyd := filepath.Join(bin, "im2000-notifyd")
	var mu sync.Mutex
	nd, _ := daemonEnv(t, e.vars, "", notifyd)
	stop := make(chan struct{})
	killed := make(chan int)
	go func() {
		kills := 0
		defer func() { killed <- kills }()
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Duration(100+rand.IntN(700)) * time.Millisecond):
			}
			mu.Lock()
			nd.Process.Kill()
			nd.Wait()
			nd, _ = daemonEnv(t, e.vars, "", notifyd)
			mu.Unlock()
			kills++
		}
	}()
	var wg sync.WaitGroup
	ids := make([]msgid.ID, n)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 4 {
				ids[i] = commit(t, a, "bob@example.net", "carol@example.com")
			}
		}()
	}
	wg.Wait()
	time.Sleep(2 * time.Second) // a few more kills while it catches up
	close(stop)
	kills := <-killed
	if kills < 5 {
		t.Fatalf("only %d kills: the run was too short to prove anything", kills)
	}
	// A notification sent just before a kill is recorded after the
	// restart (sent again), so the sidecars may lag the agents a little.
	var lagging string
	caughtUp := func() bool {
		if spooled(bob, "bob") != n || spooled(carol, "carol") != n {
			lagging = fmt.Sprintf("agents hold %d and %d", spooled(bob, "bob"), spooled(carol, "carol"))
			return false
		}
		for _, id := range ids {
			st, err := a.Status(id)
			if err != nil {
				t.Fatalf("%s: %v", id, err)
			}
			for i, r := range st.Recipients {
				if r.Notification != store.Notifying || r.Attempts < 1 || r.Next.Before(time.Now()) {
					lagging = fmt.Sprintf("%s recipient %d: %v after %d attempts, next %v", id, i, r.Notification, r.Attempts, r.Next)
					return false
				}
			}
		}
		return true
	}
	for start := time.Now(); !caughtUp(); time.Sleep(200 * time.Millisecond) {
		if time.Since(start) > 3*time.Minute {
			t.Fatalf("not caught up 3 minutes after the last kill: %s", lagging)
		}
	}
	queued, _ := a.Queue()
	todo, _ := a.Todo()
	if len(queued) != n || len(todo) != 0 {
		t.Errorf("queue/ holds %d, todo/ %d; want %d and 0", len(queued), len(todo), n)
	}
	t.Logf("%d messages to 2 agents with %d SIGKILLs of notifyd", n, kills)
}

// TestNotifydDNS: notifyd locates agents by DNS, against the test DNS
// server on loopback that drops the first datagram of the run: a domain
// with the SRV record is notified, an existing domain without it is
// noservice (temporary, though the server answers NXDOMAIN for the SRV
// name), and a domain that does not exist is baddomain (permanent).
func TestNotifydDNS(t *testing.T) {
	bob := newAgentHostFor(t, "listener", "example.net", "", "bob")
	host, port, _ := net.SplitHostPort(bob.rnasp)
	p, _ := strconv.Atoi(port)
	dns := locatetest.StartDNS(t, map[string][]dnsmessage.Resource{
		"_rnasp._tcp.example.net.": {locatetest.SRV("_rnasp._tcp.example.net.", 0, 0, uint16(p), "agent.example.net.")},
		"agent.example.net.":       {locatetest.RR("agent.example.net.", &dnsmessage.AResource{A: netip.MustParseAddr(host).As4()})},
		"example.com.":             {locatetest.A("example.com.")}, // exists, publishes no agent
	})
	dns.DropUDP(1)
	e, a := queueStore(t, nil, map[string]string{"retrybase": "600"})
	e.setConf("resolvers", dns.Addr)
	daemonEnv(t, e.vars, "", filepath.Join(bin, "im2000-notifyd"))
	id := commit(t, a, "bob@example.net", "carol@example.com", "dave@nosuch.example")
	await(t, 20*time.Second, "every outcome", func() bool {
		st, _ := a.Status(id)
		for _, r := range st.Recipients {
			if r.Attempts == 0 {
				return false
			}
		}
		return true
	})
	want := []store.Notification{store.Notifying, store.NoService, store.BadDomain}
	st, _ := a.Status(id)
	for i, r := range st.Recipients {
		if r.Notification != want[i] {
			t.Errorf("recipient %d: %v, want %v", i, r.Notification, want[i])
		}
	}
	if spooled(bob, "bob") != 1 {
		t.Error("bob's agent has no notification")
	}
}

// TestManyTarpits: more dead destinations than notifyd has workers, all
// new to it. New and slow destinations may each hold only half the
// workers, so a message to an agent that has answered before still goes
// out at once.
func TestManyTarpits(t *testing.T) {
	bob := newAgentHostFor(t, "listener", "example.net", "", "bob")
	routes := map[string]string{"example.net": bob.rnasp}
	var victims []string
	for i := 0; i < 12; i++ {
		d := fmt.Sprintf("tarpit%d.example", i)
		routes[d] = tarpit(t)
		victims = append(victims, "victim@"+d)
	}
	e, a := queueStore(t, routes, map[string]string{"timeout": "8", "retrybase": "1", "retrymax": "1", "concurrency": "4"})
	daemonEnv(t, e.vars, "", filepath.Join(bin, "im2000-notifyd"))
	commit(t, a, "bob@example.net") // bob's agent has answered before
	await(t, 4*time.Second, "bob's first notification", func() bool { return spooled(bob, "bob") == 1 })
	commit(t, a, victims...)
	time.Sleep(time.Second) // the tarpits hold their sessions
	for i := 2; i <= 4; i++ {
		commit(t, a, "bob@example.net")
		took := await(t, 4*time.Second, "bob's notification among the tarpits", func() bool { return spooled(bob, "bob") == i })
		t.Logf("notification %d after %v", i, took)
		time.Sleep(time.Second)
	}
}

// TestTriggerJunk: anyone may write to the trigger FIFO. A stray fragment
// must not swallow the next commit's wake-up, and a name of an archive
// that does not exist creates nothing.
func TestTriggerJunk(t *testing.T) {
	bob := newAgentHostFor(t, "listener", "example.net", "", "bob")
	e, a := queueStore(t, map[string]string{"example.net": bob.rnasp}, nil)
	daemonEnv(t, e.vars, "", filepath.Join(bin, "im2000-notifyd"))
	fifo := filepath.Join(e.store, "trigger")
	await(t, 5*time.Second, "the FIFO", func() bool { _, err := os.Stat(fifo); return err == nil })
	for i, junk := range []string{"x", "nosuchaccount\n", "../../etc\n", strings.Repeat("y", 5000)} {
		f, err := os.OpenFile(fifo, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteString(junk)
		f.Close()
		time.Sleep(200 * time.Millisecond)
		commit(t, a, "bob@example.net")
		await(t, 5*time.Second, fmt.Sprintf("a commit after junk %d", i), func() bool { return spooled(bob, "bob") == i+1 })
	}
	if _, err := os.Stat(filepath.Join(e.store, "nosuchaccount")); err == nil {
		t.Error("a name written to the FIFO made an archive")
	}
}
