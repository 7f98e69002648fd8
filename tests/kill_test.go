package tests

import (
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"im2000/lib/addr"
	"im2000/lib/store"
)

// TestKillDuringRun sends 1,000 messages to bob and carol while notifyd
// and both agents are killed with SIGKILL and restarted at random moments,
// and bob and carol fetch over and over: in the end each Maildir holds
// every message exactly once.
func TestKillDuringRun(t *testing.T) {
	const n = 1000
	bobAgent := newAgentHostFor(t, "listener", "example.net", "", "bob")
	carolAgent := newAgentHostFor(t, "listener", "example.com", "", "carol")
	h := newStoreHost(t, "listener", func(e *env) {
		e.setConf("routes", "_rnasp._tcp.example.net "+bobAgent.rnasp+"\n_rnasp._tcp.example.com "+carolAgent.rnasp+"\n")
		e.setConf("retrybase", "1")
		e.setConf("retrymax", "2")
		e.setConf("resend", "2")
	})
	h.setConf("storelocation", h.msrap)
	notifyd := filepath.Join(bin, "im2000-notifyd")
	var mu sync.Mutex // guards nd
	nd, _ := daemonEnv(t, h.vars, "", notifyd)

	s, _ := store.Open(h.store)
	a, _ := s.Account("alice")
	from, _ := addr.Parse("alice@example.org")
	bob, _ := addr.Parse("bob@example.net")
	carol, _ := addr.Parse("carol@example.com")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var kills atomic.Int64

	// The killer.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Duration(200+rand.IntN(600)) * time.Millisecond):
			}
			switch rand.IntN(3) {
			case 0:
				mu.Lock()
				nd.Process.Kill()
				nd.Wait()
				nd, _ = daemonEnv(t, h.vars, "", notifyd)
				mu.Unlock()
			case 1:
				bobAgent.restartAgentd(t)
			case 2:
				carolAgent.restartAgentd(t)
			}
			kills.Add(1)
		}
	}()
	// The recipients, fetching over and over.
	maildirs := map[string]string{}
	for _, who := range []struct {
		name  string
		agent *agentHost
	}{{"bob", bobAgent}, {"carol", carolAgent}} {
		e, dir := fetchEnv(t, who.name, who.agent)
		e.setConf("routes", "_msrap._tcp.example.org "+h.msrap+"\n") // binds alice's store to her domain
		maildirs[who.name] = dir
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				e.run("", "im2000-fetch", "-d", dir) // exit 111 while agents are down is expected
				time.Sleep(100 * time.Millisecond)
			}
		}()
	}
	// The sender.
	for i := 0; i < n; i++ {
		d, err := a.NewDraft(store.Submission{Sender: from, Lifetime: time.Hour, Recipients: []addr.Mailbox{bob, carol}}, store.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(d, "Subject: m%04d\r\n\r\ntoken msg-%04d\r\n", i, i)
		if _, err := d.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	allSilenced := func() (int, bool) {
		ids, _ := a.Messages()
		done := 0
		for _, id := range ids {
			st, err := a.Status(id)
			if err == nil && st.Recipients[0].Notification == store.Silenced && st.Recipients[1].Notification == store.Silenced {
				done++
			}
		}
		return done, done == n
	}
	start := time.Now()
	for {
		done, ok := allSilenced()
		if ok {
			break
		}
		if time.Since(start) > 3*time.Minute {
			close(stop)
			wg.Wait()
			t.Fatalf("after 3 minutes only %d of %d messages are silenced by both", done, n)
		}
		time.Sleep(500 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	mu.Lock()
	nd.Process.Kill()
	mu.Unlock()
	if kills.Load() < 10 {
		t.Fatalf("only %d kills happened: the run was too short to prove anything", kills.Load())
	}
	token := regexp.MustCompile(`token (msg-\d{4})`)
	for who, dir := range maildirs {
		ents, _ := os.ReadDir(filepath.Join(dir, "new"))
		seen := map[string]int{}
		for _, e := range ents {
			f, _ := os.Open(filepath.Join(dir, "new", e.Name()))
			b, _ := io.ReadAll(f)
			f.Close()
			if m := token.FindSubmatch(b); m != nil {
				seen[string(m[1])]++
			}
		}
		for i := 0; i < n; i++ {
			if c := seen[fmt.Sprintf("msg-%04d", i)]; c != 1 {
				t.Errorf("%s has message %d %d times", who, i, c)
			}
		}
		if len(ents) != n {
			t.Errorf("%s's Maildir holds %d messages, want %d", who, len(ents), n)
		}
	}
	t.Logf("%d messages to 2 recipients in %v with %d SIGKILLs", n, time.Since(start).Round(time.Second), kills.Load())
}
