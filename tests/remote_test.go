package tests

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"im2000/lib/msgid"
	"im2000/lib/store"
	"im2000/lib/wire/msrap"
)

// TestRemoteClients runs im2000-inject and im2000-status against a store
// at another "host": a configuration naming the MSOAP server, no local store.
func TestRemoteClients(t *testing.T) {
	h := newStoreHost(t, "tcpserver", nil)
	cl := newEnv(t, "alice")
	os.Remove(cl.store)
	cl.vars = append(cl.vars[:0:0], "IM2000_CONF="+cl.conf, "IM2000_ACCOUNT=alice", "PATH="+os.Getenv("PATH"), "HOME="+t.TempDir(), "TZ=UTC")
	cl.setConf("remote", h.msoap)
	cl.setConf("password", "alicepw")
	cl.setConf("sentlog", filepath.Join(t.TempDir(), "sent"))

	id1 := cl.inject("To: Bob <bob@example.net>\nCc: carol@example.com\nSubject: over the wire\n\nhello\n", "-t")
	id2 := cl.inject("Subject: to the list\n\nnews\n", "-l", "news")
	s, _ := store.Open(h.store)
	a, _ := s.Account("alice")
	mid1, _ := msgid.Parse(id1)
	m, err := a.Open(mid1)
	if err != nil {
		t.Fatalf("remote submission not in the store: %v", err)
	}
	bob := m.Env.Recipients[0].ID
	if m.Env.Sender.String() != "alice@example.org" || len(m.Env.Recipients) != 2 {
		t.Fatalf("envelope %+v", m.Env)
	}
	m.Close()

	if r := cl.run("x\n", "im2000-inject", "-l", "secret"); r.code != 100 || !strings.Contains(r.stderr, "refuses list secret") {
		t.Errorf("refused list: exit %d, %q", r.code, r.stderr)
	}
	if ids, _ := a.Messages(); len(ids) != 2 {
		t.Errorf("%d messages at the store, want 2", len(ids))
	}

	// The recipient reads and confirms; the sender sees it remotely.
	rc := dialProto(t, msrap.Protocol, h.msrap)
	retrieveAll(t, rc, bob, msrap.All, 0)
	call(t, rc, &msrap.Silence{ID: bob}, msrap.NoError, false)
	r := cl.run("", "im2000-status")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if r.code != 0 || len(lines) != 2 || !strings.HasPrefix(lines[0], id1+"\t") || !strings.Contains(lines[0], "\tover the wire\t2\t1 unprocessed, 1 silenced") || !strings.HasPrefix(lines[1], id2) {
		t.Fatalf("remote listing: exit %d %q %s", r.code, r.stdout, r.stderr)
	}
	r = cl.run("", "im2000-status", id1)
	if !strings.Contains(r.stdout, "bob@example.net\tsilenced\treadall\tpinned\t-\t-\t-\n") {
		t.Fatalf("remote recipient view: %q %s", r.stdout, r.stderr)
	}
	r = cl.run("", "im2000-status", "--json", "--pending")
	var views []struct{ ID string }
	if err := json.Unmarshal([]byte(r.stdout), &views); err != nil || len(views) != 1 || views[0].ID != id1 {
		t.Fatalf("remote --json --pending: %v %q", err, r.stdout)
	}
	if r := cl.run("", "im2000-status", msgid.New().String()); r.code != 100 {
		t.Errorf("unknown id: exit %d", r.code)
	}

	cl.setConf("password", "wrong")
	if r := cl.run("x\n", "im2000-inject", "bob@example.net"); r.code != 100 || !strings.Contains(r.stderr, "errornotauthenticated") {
		t.Errorf("wrong password: exit %d, %q", r.code, r.stderr)
	}
	cl.setConf("remote", fmt.Sprintf("127.0.0.1:%d", freePort(t)))
	if r := cl.run("x\n", "im2000-inject", "bob@example.net"); r.code != 111 {
		t.Errorf("store unreachable: exit %d, %q", r.code, r.stderr)
	}
}
