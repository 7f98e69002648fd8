// im2000-submitd and im2000-retrieved against clients that misbehave:
// broken submissions, password storms, idle connection floods, raw PDUs the
// decoder must refuse, and a message retrieved after its lifetime.

package tests

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"im2000/lib/auth"
	"im2000/lib/msgid"
	"im2000/lib/session"
	"im2000/lib/store"
	"im2000/lib/wire"
	"im2000/lib/wire/msoap"
	"im2000/lib/wire/msrap"
)

// archiveFiles lists what a failed submission could have left.
func archiveFiles(t *testing.T, root string) string {
	var out []string
	for _, d := range []string{"alice/tmp", "alice/msg", "alice/status", "alice/todo", "rcpt"} {
		ents, _ := os.ReadDir(filepath.Join(root, d))
		for _, e := range ents {
			out = append(out, d+"/"+e.Name())
		}
	}
	return strings.Join(out, " ")
}

// TestSubmitHostile: gaps, overlaps, oversized messages, quota and cut-off
// clients get the right status, leave nothing behind, and the session or
// the server goes on.
func TestSubmitHostile(t *testing.T) {
	h := newStoreHost(t, "listener", nil)
	c := login(t, h, "alice")
	envelope := &msoap.SubmitEnvelope{Recipients: []wire.MailBox{mb("bob", "example.net")}, Lifetime: 86400}
	chunk := func(off int, data string, last bool) *msoap.SubmitMsgChunk {
		return &msoap.SubmitMsgChunk{IsLast: last, Offset: uint64(off), Data: []byte(data)}
	}
	call(t, c, chunk(0, "x", true), msoap.ErrorUnexpectedCommand, true) // no envelope
	call(t, c, envelope, msoap.NoError, false)
	call(t, c, envelope, msoap.ErrorUnexpectedCommand, true) // two at once
	call(t, c, envelope, msoap.NoError, false)
	call(t, c, chunk(0, "hello", false), msoap.NoError, false)
	call(t, c, chunk(7, "gap", true), msoap.ErrorUnexpectedCommand, true)
	call(t, c, envelope, msoap.NoError, false)
	call(t, c, chunk(0, "hello", false), msoap.NoError, false)
	call(t, c, chunk(3, "overlap", true), msoap.ErrorUnexpectedCommand, true)
	call(t, c, envelope, msoap.NoError, false)
	big := strings.Repeat("z", 60000)
	call(t, c, chunk(0, big, false), msoap.NoError, false)
	call(t, c, chunk(60000, big, true), msoap.ErrorNotEnoughRoom, true) // over databytes (100000)
	if left := archiveFiles(t, h.store); left != "" {
		t.Fatalf("failed submissions left: %s", left)
	}
	// The session still works.
	submit(t, c, []byte("Subject: ok\r\n\r\nfine\r\n"), 100, envelope)

	// Quota: the envelope counts too (about 170 octets here).
	q := newStoreHost(t, "listener", func(e *env) { e.setConf("quota", "600") })
	cq := login(t, q, "alice")
	submit(t, cq, []byte(strings.Repeat("q", 300)), 100, envelope)
	call(t, cq, envelope, msoap.NoError, false)
	call(t, cq, chunk(0, strings.Repeat("q", 300), true), msoap.ErrorWouldExceedQuota, true)
	if ids, _ := os.ReadDir(filepath.Join(q.store, "alice", "msg")); len(ids) != 1 {
		t.Fatalf("%d messages after a refused one, want 1", len(ids))
	}
}

// TestPasswordStorm: failures from one address are answered ever more
// slowly, other sessions are served meanwhile, and the right password
// still gets in.
func TestPasswordStorm(t *testing.T) {
	h := newStoreHost(t, "listener", nil)
	other := login(t, h, "bob")
	stop := make(chan struct{})
	served := make(chan int)
	go func() {
		n := 0
		for {
			select {
			case <-stop:
				served <- n
				return
			default:
			}
			if _, err := other.Call(&msoap.Track{ID: msgid.New()}); err != nil && !strings.Contains(err.Error(), "nosuchmessage") {
				t.Error(err)
			}
			n++
		}
	}()
	c := dialProto(t, msoap.Protocol, h.msoap)
	var took []time.Duration
	for i := 0; i < 4; i++ {
		start := time.Now()
		account := "alice"
		if i%2 == 1 {
			account = "nosuchaccount"
		}
		call(t, c, &msoap.Authenticate{Account: account, Password: "guess"}, msoap.ErrorNotAuthenticated, false)
		took = append(took, time.Since(start))
	}
	close(stop)
	n := <-served
	// Each failure from this address doubles the delay from auth.Base. A
	// wait can take longer on a loaded machine, never shorter, so only the
	// lower bound is checked.
	for i := range took {
		if took[i] < auth.Base<<i {
			t.Fatalf("failure delays do not grow: %v (the %d. should be at least %v)", took, i+1, auth.Base<<i)
		}
	}
	if n < 100 {
		t.Fatalf("another session was served only %d times during the storm", n)
	}
	call(t, c, &msoap.Authenticate{Account: "alice", Password: "alicepw"}, msoap.NoError, false)
	t.Logf("delays %v; %d commands served to another session meanwhile", took, n)
}

// TestIdleFlood opens 1,000 connections at once against a server limited
// to 50 sessions: the 950 beyond the limit are told errorserviceshutdown
// and closed, the 50 stay, and once they go the server serves as before.
func TestIdleFlood(t *testing.T) {
	// All from one address: the cap per address (sessionsperaddr) is
	// off, so that this proves the global one.
	h := newStoreHost(t, "listener", func(e *env) { e.setConf("sessionsperaddr", "0") }, "-c", "50")
	const n = 1000
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	// The store host's -c 20 comes first on the command line; ours wins.
	for i := 0; i < n; i++ {
		c, err := net.Dial("tcp", h.msrap)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		conns = append(conns, c)
	}
	refused, idle := 0, 0
	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, c := range conns {
		wg.Add(1)
		go func(c net.Conn) {
			defer wg.Done()
			c.SetReadDeadline(time.Now().Add(3 * time.Second))
			frame, err := wire.ReadFrame(c, 1<<16)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				idle++
				return
			}
			if p, err := msrap.Protocol.Unmarshal(frame); err == nil && p.Status == msrap.ErrorServiceShutdown && p.ForceAbort {
				refused++
			}
		}(c)
	}
	wg.Wait()
	if refused != n-50 || idle != 50 {
		t.Fatalf("%d refused and %d idle; want %d and 50", refused, idle, n-50)
	}
	for _, c := range conns {
		c.Close()
	}
	conns = nil
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := session.Dial(t.Context(), msrap.Protocol, h.msrap, 2*time.Second)
		if err == nil {
			_, err = c.Call(&msrap.QuerySize{ID: msgid.New()})
			c.Close()
			if err != nil && strings.Contains(err.Error(), "nosuchmessage") {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("server not serving after the flood: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestRawAndExpired sends raw PDUs the decoder must refuse, and retrieves
// a message after its lifetime.
func TestRawAndExpired(t *testing.T) {
	h := newStoreHost(t, "tcpserver", func(e *env) { e.setConf("minlifetime", "1") })
	conn, err := net.Dial("tcp", h.msoap)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, raw := range [][]byte{{0x30, 0x00}, {0xA1, 0x02, 0xA0, 0x00}, wire.MarshalResponse(false, 0, wire.Null{})} {
		wire.WriteFrame(conn, raw)
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		frame, err := wire.ReadFrame(conn, 1<<16)
		if err != nil {
			t.Fatalf("%x: %v", raw, err)
		}
		if p, _ := msoap.Protocol.Unmarshal(frame); p.Status != msoap.ErrorMalformedPDU || !p.ForceAbort {
			t.Fatalf("%x: %+v", raw, p)
		}
	}
	c := login(t, h, "alice")
	id := submit(t, c, []byte("Subject: brief\r\n\r\nx\r\n"), 100, &msoap.SubmitEnvelope{Recipients: []wire.MailBox{mb("bob", "example.net")}, Lifetime: 3})
	s, _ := store.Open(h.store)
	a, _ := s.Account("alice")
	m, err := a.Open(id)
	if err != nil {
		t.Fatal(err)
	}
	bob := m.Env.Recipients[0].ID
	expires := m.Env.Expires()
	m.Close()
	// Three seconds (from a submission time in whole seconds: two at
	// least) leave room for a loaded machine to ask before the end.
	r := dialProto(t, msrap.Protocol, h.msrap)
	call(t, r, &msrap.QuerySize{ID: bob}, msrap.NoError, false)
	time.Sleep(time.Until(expires) + 1100*time.Millisecond)
	call(t, r, &msrap.Retrieve{ID: bob, Type: msrap.All}, msrap.ErrorNoSuchMessage, false)
	call(t, r, &msrap.Silence{ID: bob}, msrap.ErrorNoSuchMessage, false)
}
