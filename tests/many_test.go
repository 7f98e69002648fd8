package tests

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"im2000/lib/store"
	"im2000/lib/wire"
	"im2000/lib/wire/msrap"
	"im2000/lib/wire/rnasp"
	"im2000/tests/hostile"
)

// TestTenThousandRecipients: one message to 10,000 recipients; notifyd
// notifies every one (an agent that accepts everything); every recipient
// silences, by eight clients in parallel, each connection its own
// im2000-retrieved process under tcpserver; the status shows every one
// silenced: no update lost, and the status files stay small (a journal
// record per event, not a rewrite).
func TestTenThousandRecipients(t *testing.T) {
	n := 10000
	if testing.Short() {
		n = 1000
	}
	agent := hostile.Start(t, rnasp.Protocol, func() hostile.Handler {
		return func(cmd wire.Body) hostile.Answer {
			c, ok := cmd.(*rnasp.Notify)
			if !ok {
				return hostile.Answer{Close: true}
			}
			return hostile.Respond(&rnasp.NotifyOK{Results: make([]uint64, len(c.Notifications))})
		}
	})
	e, a := queueStore(t, map[string]string{"example.net": agent.Addr}, map[string]string{"resend": "3600"})
	var rcpts []string
	for i := 0; i < n; i++ {
		rcpts = append(rcpts, fmt.Sprintf("r%d@example.net", i))
	}
	env := commitFor(t, a, 24*time.Hour, nil, rcpts...)
	_, logs := daemonEnv(t, e.vars, "", filepath.Join(bin, "im2000-notifyd"))
	count := func(want store.Notification) int {
		st, err := a.Status(env.ID)
		if err != nil {
			t.Fatal(err)
		}
		c := 0
		for _, r := range st.Recipients {
			if r.Notification == want {
				c++
			}
		}
		return c
	}
	for start := time.Now(); count(store.Notifying) < n; time.Sleep(500 * time.Millisecond) {
		if time.Since(start) > 3*time.Minute {
			t.Fatalf("%d of %d notified after 3 minutes:\n%s", count(store.Notifying), n, logs.String())
		}
	}

	tcpserver, err := exec.LookPath("tcpserver")
	if err != nil {
		t.Fatal("tcpserver (ucspi-tcp) is not installed: run tests/deps.sh")
	}
	port := strconv.Itoa(freePort(t))
	addr := "127.0.0.1:" + port
	_, rlogs := daemonEnv(t, e.vars, addr, tcpserver, "-RHl0", "-c", "20", "127.0.0.1", port, filepath.Join(bin, "im2000-retrieved"))
	const clients = 8
	var wg sync.WaitGroup
	for w := 0; w < clients; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			c := dialProto(t, msrap.Protocol, addr)
			for i := w; i < n; i += clients {
				if _, err := c.Call(&msrap.Silence{ID: env.Recipients[i].ID}); err != nil {
					t.Errorf("silence %d: %v", i, err)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	if t.Failed() {
		t.Fatalf("retrieved:\n%s", rlogs.String())
	}
	if got := count(store.Silenced); got != n {
		t.Fatalf("%d of %d recipients silenced: updates were lost", got, n)
	}
	// Notifyd's outcomes and the silences are all in the status; what the
	// files take is the snapshot and the journal (about 20 octets an
	// event), not a rewrite per event (which would be gigabytes).
	var size int64
	files, _ := filepath.Glob(filepath.Join(e.store, "alice", "status", env.ID.String()+"*"))
	for _, f := range files {
		if fi, err := osStat(f); err == nil {
			size += fi
		}
	}
	if per := size / int64(n); per > 300 {
		t.Errorf("status files take %d octets per recipient", per)
	}
	q := queueSummary(t, e)
	if q.Messages != 0 || q.Recipients != 0 {
		t.Errorf("queue summary after every silence: %+v", q)
	}
	t.Logf("%d recipients notified and silenced; status files %d octets (%d per recipient)", n, size, size/int64(n))

}

func osStat(path string) (int64, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}
