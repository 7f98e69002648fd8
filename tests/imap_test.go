package tests

import (
	"bufio"
	"io"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// imapDeployment is alice's store, bob's agent, and bob's im2000-imapd
// reading from them, with messages injected by alice for bob.
type imapDeployment struct {
	store     *storeHost
	agent     *agentHost
	retrieved *exec.Cmd // the store's MSRAP server, listening itself: the tests stop it
	env       *env
	state     string
	port      string
	ids       []string
	logs      map[string]*syncBuffer // the deployment's own daemons, shown when a test fails
}

// newIMAPDeployment injects the bodies (one message each) and starts
// im2000-imapd under tcpserver.
func newIMAPDeployment(t *testing.T, bodies ...string) *imapDeployment {
	return newIMAPDeploymentWith(t, nil, bodies...)
}

// newIMAPDeploymentWith is newIMAPDeployment with setup changing imapd's
// configuration first.
func newIMAPDeploymentWith(t *testing.T, setup func(*env), bodies ...string) *imapDeployment {
	t.Helper()
	bobAgent := newAgentHostFor(t, "listener", "example.net", "", "bob")
	h := newStoreHost(t, "tcpserver", func(e *env) {
		e.setConf("routes", "_rnasp._tcp.example.net "+bobAgent.rnasp+"\n")
		e.setConf("retrybase", "1")
	})
	d := &imapDeployment{store: h, agent: bobAgent, logs: map[string]*syncBuffer{}}
	t.Cleanup(func() {
		if t.Failed() {
			for name, l := range d.logs {
				t.Logf("%s's log:\n%s", name, l.String())
			}
		}
	})
	h.msrap = "127.0.0.1:" + strconv.Itoa(freePort(t))
	d.startRetrieved(t)
	h.setConf("storelocation", h.msrap)
	_, d.logs["im2000-notifyd"] = daemonEnv(t, h.vars, "", filepath.Join(bin, "im2000-notifyd"))
	time.Sleep(300 * time.Millisecond)
	for _, b := range bodies {
		d.ids = append(d.ids, d.send(t, b))
	}
	ie := newEnv(t, "bob")
	ie.setConf("rna", bobAgent.rnaqp)
	d.state = filepath.Join(t.TempDir(), "imap")
	ie.setConf("imapstate", d.state)
	ie.setConf("imappoll", "1")
	ie.setConf("routes", "_msrap._tcp.example.org "+h.msrap+"\n") // binds alice's store to her domain
	d.env = ie
	if setup != nil {
		setup(ie)
	}
	tcpserver, err := exec.LookPath("tcpserver")
	if err != nil {
		t.Fatal("tcpserver (ucspi-tcp) is not installed: run tests/deps.sh")
	}
	d.port = strconv.Itoa(freePort(t))
	_, d.logs["im2000-imapd"] = daemonEnv(t, ie.vars, "127.0.0.1:"+d.port, tcpserver, "-RHl0", "127.0.0.1", d.port, filepath.Join(bin, "im2000-imapd"))
	return d
}

// startRetrieved starts the store's im2000-retrieved on h.msrap.
func (d *imapDeployment) startRetrieved(t *testing.T) {
	d.retrieved, d.logs["im2000-retrieved"] = daemonEnv(t, d.store.vars, d.store.msrap, filepath.Join(bin, "im2000-retrieved"), "-l", d.store.msrap)
}

// listen starts another im2000-imapd of the deployment, listening itself
// with args, and returns its address.
func (d *imapDeployment) listen(t *testing.T, args ...string) (string, *exec.Cmd, *syncBuffer) {
	addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	cmd, logs := daemonEnv(t, d.env.vars, addr, filepath.Join(bin, "im2000-imapd"), append([]string{"-l", addr}, args...)...)
	return addr, cmd, logs
}

// send injects a message from alice to bob and waits for bob's agent to
// have its notification.
func (d *imapDeployment) send(t *testing.T, body string) string {
	t.Helper()
	id := d.store.inject(body, "bob@example.net")
	await(t, 10*time.Second, "bob notified", func() bool {
		return recipientStates(t, d.store.store, "alice", id)["bob@example.net"] == "notifying/unread"
	})
	return id
}

// state is what alice's store says of message i for bob.
func (d *imapDeployment) status(t *testing.T, i int) string {
	return recipientStates(t, d.store.store, "alice", d.ids[i])["bob@example.net"]
}

// python runs a Python script with the port as its argument, step by
// step: each line it prints is handed to step, and a line is written to
// its stdin when step returns, for the script's input() to go on.
func python(t *testing.T, script, port string, step func(line string)) {
	t.Helper()
	cmd := exec.Command("/usr/bin/python3", "-u", "-c", script, port)
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(out)
	for {
		line, err := r.ReadString('\n')
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		step(strings.TrimSpace(line))
		io.WriteString(in, "\n")
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("python: %v\n%s", err, stderr.String())
	}
}

// imapHelpers are Python functions the scripts share: fetch returns
// {uid: (flags, payload)} from a UID FETCH; idle waits in IDLE for an
// untagged response containing what.
const imapHelpers = `import imaplib, re, socket, sys, time
def fetch(M, uids, items):
    typ, data = M.uid("FETCH", uids, items)
    assert typ == "OK", (typ, data)
    out = {}
    for d in data:
        if isinstance(d, tuple):
            head, payload = d
        elif d == b")":
            continue
        else:
            head, payload = d, b""
        uid = int(re.search(rb"UID (\d+)", head).group(1))
        flags = re.search(rb"FLAGS \(([^)]*)\)", head)
        out[uid] = (flags.group(1).decode() if flags else None, payload)
    return out
def step(name):
    print(name, flush=True)
    input()
def idle(M, what, timeout):
    tag = M._new_tag()
    M.send(tag + b" IDLE\r\n")
    assert M.readline().startswith(b"+")
    M.sock.settimeout(timeout)
    got = []
    try:
        while True:
            line = M.readline()
            got.append(line)
            if what in line:
                break
    finally:
        M.sock.settimeout(None)
        M.send(b"DONE\r\n")
        while not M.readline().startswith(tag):
            pass
    return got
`

// TestIMAP reads IM2000 mail with Python's imaplib: headers (the sender
// sees readheaders), a body (readall, \Seen set), \Deleted and EXPUNGE
// (silenced), a second session of the same user seeing the expunge, and
// IDLE seeing a new message arrive. Each step is checked at alice's store.
func TestIMAP(t *testing.T) {
	d := newIMAPDeployment(t, "Subject: first\n\n.leading dot\nline two\n", "Subject: second\n\nhello again\n")
	script := imapHelpers + `
port = int(sys.argv[1])
M = imaplib.IMAP4("127.0.0.1", port)
try:
    M.login("bob", "wrong")
    print("wrong password accepted")
except imaplib.IMAP4.error:
    pass
M = imaplib.IMAP4("127.0.0.1", port)
M.login("bob", "bobpw")
typ, data = M.select("INBOX")
assert typ == "OK" and data == [b"2"], data
for bad in (lambda: M.create("Other"), lambda: M.rename("INBOX", "X"), lambda: M.append("INBOX", None, None, b"Subject: x\r\n\r\nx\r\n")):
    typ, data = bad()
    assert typ == "NO", (typ, data)
typ, data = M.list()
assert typ == "OK" and len(data) == 1 and b"INBOX" in data[0], data
typ, data = M.status("INBOX", "(MESSAGES UIDNEXT UIDVALIDITY UNSEEN)")
assert typ == "OK" and b"MESSAGES 2" in data[0] and b"UNSEEN 2" in data[0], data
heads = fetch(M, "1:*", "(UID FLAGS RFC822.SIZE ENVELOPE BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
subj = {uid: p for uid, (f, p) in heads.items()}
first = [u for u, p in subj.items() if b"first" in p][0]
second = [u for u, p in subj.items() if b"second" in p][0]
assert all("Seen" not in f for f, p in heads.values()), heads
step("headers")
body = fetch(M, str(first), "(BODY[])")[first]
assert b".leading dot" in body[1] and "\\Seen" in body[0], body
flags = fetch(M, str(first), "(FLAGS)")[first][0]
assert "\\Seen" in flags, flags
again = fetch(M, str(first), "(BODY.PEEK[TEXT])")[first]
assert b"line two" in again[1], again
step("body")
M2 = imaplib.IMAP4("127.0.0.1", port)
M2.login("bob", "bobpw")
typ, data = M2.select("INBOX")
assert data == [b"2"], data
typ, data = M.uid("STORE", str(first), "+FLAGS", "(\\Deleted)")
assert typ == "OK", data
typ, data = M.expunge()
assert typ == "OK" and data == [b"1"] or data == [b"2"], (typ, data)
step("expunged")
typ, data = M2.noop()
typ, data = M2.response("EXPUNGE")
assert data and data[0] is not None, data
typ, data = M2.uid("SEARCH", None, "ALL")
assert data == [str(second).encode()], data
step("idle")
got = idle(M2, b"EXISTS", 30)
assert any(b"2 EXISTS" in g for g in got), got
new = fetch(M2, "*", "(UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
assert any(b"third" in p for f, p in new.values()), new
M2.logout()
M.logout()
print("done", flush=True)
`
	python(t, script, d.port, func(line string) {
		switch line {
		case "headers":
			for i := range 2 {
				if s := d.status(t, i); s != "notifying/readheaders" {
					t.Fatalf("message %d after its headers were fetched: %s", i+1, s)
				}
			}
		case "body":
			if s := d.status(t, 0); s != "notifying/readall" {
				t.Fatalf("message 1 after BODY[]: %s", s)
			}
		case "expunged":
			if s := d.status(t, 0); s != "silenced/readall" {
				t.Fatalf("message 1 after \\Deleted and EXPUNGE: %s", s)
			}
			if s := d.status(t, 1); s != "notifying/readheaders" {
				t.Fatalf("message 2, not deleted: %s", s)
			}
		case "idle":
			d.store.inject("Subject: third\n\nnew while idling\n", "bob@example.net")
		case "done":
		default:
			t.Fatalf("python: %s", line)
		}
	})
}
