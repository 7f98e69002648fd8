package tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// TestIMAPRestart: UIDVALIDITY and UIDs are the same after im2000-imapd
// is restarted (and in the sessions of tcpserver's processes); a store
// that cannot be reached leaves its messages pending, unexpunged, and
// once it is back an EXPUNGE silences them. The header fetched before
// the store went away is served from the cache.
func TestIMAPRestart(t *testing.T) {
	d := newIMAPDeployment(t, "Subject: one\n\nfirst body\n", "Subject: two\n\nsecond body\n")
	addr, first, _ := d.listen(t)
	script := imapHelpers + `
host, port = sys.argv[1].rsplit(":", 1)
M = imaplib.IMAP4(host, int(port))
M.login("bob", "bobpw")
typ, data = M.select("INBOX")
uv = M.response("UIDVALIDITY")[1][0].decode()
typ, data = M.uid("SEARCH", None, "ALL")
uids = data[0].decode().split()
action = sys.argv[2]
if action == "headers":
    fetch(M, uids[0], "(BODY.PEEK[HEADER])")
elif action == "down":
    got = fetch(M, uids[0], "(BODY.PEEK[HEADER])")
    assert b"Subject: one" in got[int(uids[0])][1], got
    typ, data = M.uid("FETCH", uids[1], "(BODY[])")
    assert typ == "NO", (typ, data)
    M.uid("STORE", uids[1], "+FLAGS", "(\\Deleted)")
    typ, data = M.expunge()
    assert typ == "NO", (typ, data)
elif action == "expunge":
    typ, data = M.expunge()
    assert typ == "OK", (typ, data)
    typ, data = M.uid("SEARCH", None, "ALL")
    uids = data[0].decode().split()
M.logout()
print(uv, " ".join(uids))
`
	run := func(addr, action string) string {
		t.Helper()
		out, err := exec.Command("/usr/bin/python3", "-c", script, addr, action).CombinedOutput()
		if err != nil {
			t.Fatalf("imaplib (%s): %v\n%s", action, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	before := run(addr, "headers")
	if len(strings.Fields(before)) != 3 {
		t.Fatalf("first session: %q", before)
	}
	first.Process.Kill()
	first.Wait()
	addr2, _, _ := d.listen(t)
	if after := run(addr2, "list"); after != before {
		t.Fatalf("after a restart: %q, before %q (UIDVALIDITY and UIDs)", after, before)
	}
	if other := run("127.0.0.1:"+d.port, "list"); other != before {
		t.Fatalf("under tcpserver: %q, listener %q", other, before)
	}

	// The store goes away: nothing is lost or silenced.
	d.retrieved.Process.Kill()
	d.retrieved.Wait()
	if got := run(addr2, "down"); got != before {
		t.Fatalf("with the store down: %q, before %q", got, before)
	}
	if s := d.status(t, 1); s != "notifying/unread" {
		t.Fatalf("message 2 with its store down: %s", s)
	}
	pending, _ := os.ReadDir(filepath.Join(d.state, "bob", "pending"))
	if len(pending) != 2 {
		t.Fatalf("pending entries with the store down: %d, want 2", len(pending))
	}

	// Back: the EXPUNGE of the \Deleted message goes through.
	d.startRetrieved(t)
	f := strings.Fields(before)
	if got := run(addr2, "expunge"); got != f[0]+" "+f[1] {
		t.Fatalf("after the store came back and EXPUNGE: %q, want %q", got, f[0]+" "+f[1])
	}
	if s := d.status(t, 1); s != "silenced/readall" { // a silence says the reader has it
		t.Fatalf("message 2 expunged: %s", s)
	}
	if s := d.status(t, 0); s != "notifying/readheaders" {
		t.Fatalf("message 1, its header fetched: %s", s)
	}
}

// TestIMAPLoginStorm: wrong passwords from one address, four sessions at
// a time, by LOGIN and then from another address by AUTHENTICATE PLAIN,
// are slowed by im2000-imapd itself (the agent, with imapd as its front
// end, does not delay them), while bob logs in from a third address. The
// outcome, not the time taken: some attempts are refused unchecked (never
// asked of the agent), and imapd's log counts agree with the clients'
// answers, every attempt either checked and failed or refused unchecked.
func TestIMAPLoginStorm(t *testing.T) {
	d := newIMAPDeploymentWith(t, func(e *env) {
		e.setConf("authdelay", "400")
		e.setConf("authmaxdelay", "1600")
	}, "Subject: one\n\nbody\n")
	frontEnd(t, d.agent)
	addr, _, logs := d.listen(t)
	script := `import imaplib, sys, socket
host, port = sys.argv[1].rsplit(":", 1)
s = socket.create_connection((host, int(port)), source_address=(sys.argv[2], 0))
class C(imaplib.IMAP4):
    def _create_socket(self, timeout):
        return s
M = C(host, int(port))
try:
    if sys.argv[5] == "PLAIN":
        M.authenticate("PLAIN", lambda _: ("\0" + sys.argv[3] + "\0" + sys.argv[4]).encode())
    else:
        M.login(sys.argv[3], sys.argv[4])
    print("OK")
except imaplib.IMAP4.error as e:
    print(str(e))
`
	login := func(from, user, pass, mech string) string {
		out, _ := exec.Command("/usr/bin/python3", "-c", script, addr, from, user, pass, mech).CombinedOutput()
		return strings.TrimSpace(string(out))
	}
	for _, storm := range []struct{ from, mech string }{{"127.0.0.3", "LOGIN"}, {"127.0.0.4", "PLAIN"}} {
		var wg sync.WaitGroup
		var mu sync.Mutex
		var answers []string
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 4 {
					a := login(storm.from, "bob", "wrong", storm.mech)
					mu.Lock()
					answers = append(answers, a)
					mu.Unlock()
				}
			}()
		}
		if a := login("127.0.0.1", "bob", "bobpw", storm.mech); a != "OK" {
			t.Errorf("%s: bob from another address during the storm: %q", storm.mech, a)
		}
		wg.Wait()
		// 16 failures from one address, four at a time: answered authdelay,
		// 2x, 4x (capped at authmaxdelay) apart, each reserving its time
		// before the check, so the address soon runs more than authmaxdelay
		// ahead and is refused unchecked.
		failed, throttled := 0, 0
		for _, a := range answers {
			switch {
			case strings.Contains(a, "invalid login"):
				failed++
			case strings.Contains(a, "too many failed logins"):
				throttled++
			default:
				t.Errorf("%s: a wrong password: %q", storm.mech, a)
			}
		}
		checked := strings.Count(logs.String(), "login failed: "+storm.from+":")
		unchecked := strings.Count(logs.String(), "login refused unchecked: "+storm.from+":")
		if throttled == 0 || failed+throttled != 16 || checked != failed || unchecked != throttled {
			t.Errorf("%s: 16 wrong passwords from one address: %d refused unchecked (log: %d), %d checked (log: %d); want some refused unchecked, the log agreeing:\n%q",
				storm.mech, throttled, unchecked, failed, checked, answers)
		}
		t.Logf("%s: 16 wrong passwords from one address: %d checked at the agent, %d refused unchecked", storm.mech, failed, throttled)
	}
	if t.Failed() {
		t.Logf("imapd's log:\n%s", logs.String())
	}
}
