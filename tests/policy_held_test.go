package tests

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"im2000/lib/agent"
	"im2000/lib/msgid"
	"im2000/lib/wire"
	"im2000/lib/wire/msrap"
	"im2000/lib/wire/rnaqp"
	"im2000/tests/hostile"
)

// heldNotes are n notifications from n senders at unknown.example, whose
// store is at where, message ids from base on.
func heldNotes(where string, base, n int) []rnaqp.NotificationAndLocalData {
	var out []rnaqp.NotificationAndLocalData
	for i := base; i < base+n; i++ {
		x := noteAt(where, 0, 100)
		x.Notification.ID = msgid.ID{0xee, byte(i >> 16), byte(i >> 8), byte(i)}
		x.Notification.Sender = "s" + strconv.Itoa(i) + "@unknown.example"
		out = append(out, x)
	}
	return out
}

func countDir(t *testing.T, dir string) int {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return len(ents)
}

// heldEnv is bob's fetch with "default hold", a store for unknown.example
// and maxheld.
func heldEnv(t *testing.T, store string, maxheld int) (*env, string) {
	e := newEnv(t, "bob")
	e.setConf("password", "bobpw")
	e.setConf("routes", "_msrap._tcp.unknown.example "+store+"\n_msrap._tcp.other.example "+store+"\n")
	e.setConf("senderpolicy", "default hold")
	e.setConf("maxheld", strconv.Itoa(maxheld))
	return e, filepath.Join(t.TempDir(), "Maildir")
}

func (e *env) agentGives(t *testing.T, notes ...rnaqp.NotificationAndLocalData) {
	ag := hostile.Start(t, rnaqp.Protocol, func() hostile.Handler { return fakeAgent(notes...) })
	e.setConf("rna", ag.Addr)
}

// TestHeldBounded: 60 new senders a run, three runs, maxheld 30: the held
// box never holds more than 30 (the oldest go, logged), an entry older
// than maxlifetime goes at once, and no store is contacted.
func TestHeldBounded(t *testing.T) {
	store := hostile.Start(t, msrap.Protocol, func() hostile.Handler { return fakeStore("Subject: x\r\n\r\nx\r\n") })
	e, maildir := heldEnv(t, store.Addr, 30)
	e.setConf("maxlifetime", "3600")
	held := filepath.Join(maildir, ".im2000", "held")
	for run := 0; run < 3; run++ {
		notes := heldNotes(store.Addr, run*60, 60)
		if run == 0 {
			notes[0].Date = uint64(time.Now().Add(-2 * time.Hour).Unix())
		}
		e.agentGives(t, notes...)
		r := e.run("", "im2000-fetch", "-d", maildir)
		if r.code != 0 {
			t.Fatalf("run %d: exit %d: %s", run, r.code, r.stderr)
		}
		if n := countDir(t, held); n != 30 {
			t.Errorf("run %d: %d held, want maxheld (30)", run, n)
		}
		if n := countDir(t, filepath.Join(maildir, ".im2000", "held.sender")); n != 30 {
			t.Errorf("run %d: %d stored senders, want 30", run, n)
		}
		if !strings.Contains(r.stderr, "not retrieved: the oldest of ") || !strings.Contains(r.stderr, "over maxheld (30)") {
			t.Errorf("run %d: the log does not say what went over maxheld:\n%.2000s", run, r.stderr)
		}
		if run == 0 && !strings.Contains(r.stderr, "im2000-fetch: warning: dropped held: "+agent.Key(&notes[0])+" from s0@unknown.example at "+store.Addr+", not retrieved: held since ") {
			t.Errorf("the expired one is not logged:\n%.2000s", r.stderr)
		}
	}
	e.agentGives(t)
	lines := parseSummary(t, e.run("", "im2000-fetch", "-d", maildir, "--summary").stdout)
	if len(lines) != 30 {
		t.Errorf("--summary: %d lines", len(lines))
	}
	for _, l := range lines { // the newest are kept: the last run's
		i, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(l.sender, "s"), "@unknown.example"))
		if err != nil || i < 120 || l.state != "held" {
			t.Errorf("--summary: %+v", l)
		}
	}
	if store.Sessions() != 0 {
		t.Errorf("the store saw %d sessions", store.Sessions())
	}
}

// TestHeldNoDNS: held entries are decided on the senders verified when
// they were held: once their domains' DNS stops answering, a run costs no
// lookup for them (it used to cost two timeouts each, every run), and they
// stay held; accepting one checks its binding again, and it is dropped
// unverified, its store never contacted.
func TestHeldNoDNS(t *testing.T) {
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close() // never answers
	store := hostile.Start(t, msrap.Protocol, func() hostile.Handler { return fakeStore("Subject: x\r\n\r\nx\r\n") })
	var notes []rnaqp.NotificationAndLocalData
	routes := ""
	for i := 0; i < 3; i++ {
		x := noteAt(store.Addr, byte(i), 100)
		d := fmt.Sprintf("d%d.evil.example", i)
		x.Notification.Sender = "s@" + d
		notes = append(notes, x)
		routes += "_msrap._tcp." + d + " " + store.Addr + "\n"
	}
	e, maildir := heldEnv(t, store.Addr, 100)
	e.setConf("timeout", "2")
	e.setConf("routes", routes)
	e.agentGives(t, notes...)
	if r := e.run("", "im2000-fetch", "-d", maildir); r.code != 0 || countDir(t, filepath.Join(maildir, ".im2000", "held")) != 3 {
		t.Fatalf("hold run: exit %d: %s", r.code, r.stderr)
	}
	e.agentGives(t)
	e.setConf("routes", "")
	e.setConf("resolvers", udp.LocalAddr().String())
	for run := 0; run < 2; run++ {
		start := time.Now()
		r := e.run("", "im2000-fetch", "-d", maildir)
		// Not stuck: the three lookups cost 12 s before.
		if d := time.Since(start); r.code != 0 || d > 3*time.Second {
			t.Errorf("run %d: exit %d in %v (timeout 2 s): %s", run, r.code, d, r.stderr)
		}
		if n := countDir(t, filepath.Join(maildir, ".im2000", "held")); n != 3 {
			t.Errorf("run %d: %d held, want 3", run, n)
		}
	}
	lines := parseSummary(t, e.run("", "im2000-fetch", "-d", maildir, "--summary").stdout)
	for _, l := range lines {
		if l.verified != "verified" || l.state != "held" {
			t.Errorf("--summary: %+v", l)
		}
	}
	key := agent.Key(&notes[1])
	r := e.run("", "im2000-fetch", "-d", maildir, "--accept", key)
	if r.code != 0 || !strings.Contains(r.stderr, "accepted "+key) || !regexp.MustCompile(`(?m)^im2000-fetch: warning: dropped unverified: [0-9a-f]+ from s@d1\.evil\.example at `+regexp.QuoteMeta(store.Addr)+`, not retrieved: `).MatchString(r.stderr) {
		t.Errorf("--accept of one whose DNS is gone: exit %d: %s", r.code, r.stderr)
	}
	if n := countDir(t, filepath.Join(maildir, ".im2000", "held")); n != 2 || store.Sessions() != 0 || len(maildirMessages(t, maildir)) != 0 {
		t.Errorf("after --accept: %d held, the store saw %d sessions", n, store.Sessions())
	}
}

// TestHeldTransitions: --summary says what the next run does: a held
// sender now denied is "denied", a pending one too, a held entry without
// its stored sender "unverified" and "dropped"; the next run drops them,
// logged, and no store is contacted.
func TestHeldTransitions(t *testing.T) {
	store := hostile.Start(t, msrap.Protocol, func() hostile.Handler { return fakeStore("Subject: x\r\n\r\nx\r\n") })
	e, maildir := heldEnv(t, store.Addr, 100)
	n := heldNotes(store.Addr, 0, 3)
	n[2].Notification.Sender = "s2@other.example"
	e.agentGives(t, n[0], n[1])
	if r := e.run("", "im2000-fetch", "-d", maildir); r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	k0, k1, k2 := agent.Key(&n[0]), agent.Key(&n[1]), agent.Key(&n[2])
	if err := os.Remove(filepath.Join(maildir, ".im2000", "held.sender", k1)); err != nil {
		t.Fatal(err)
	}
	e.setConf("senderpolicy", "default hold\ndeny @unknown.example\ndeny @other.example")
	e.agentGives(t, n[2])
	r := e.run("", "im2000-fetch", "-d", maildir, "--summary")
	want := map[string]string{k0: "verified denied", k1: "unverified dropped", k2: "verified denied"}
	lines := parseSummary(t, r.stdout)
	for _, l := range lines {
		if want[l.key] != l.verified+" "+l.state {
			t.Errorf("--summary: %s: %s %s, want %s", l.sender, l.verified, l.state, want[l.key])
		}
	}
	if len(lines) != 3 {
		t.Errorf("--summary: %q", r.stdout)
	}
	e.agentGives(t)
	r = e.run("", "im2000-fetch", "-d", maildir)
	for _, w := range []string{"dropped held " + k0 + " from s0@unknown.example at " + store.Addr + ", not retrieved: denied by ",
		"im2000-fetch: warning: dropped held: " + k1 + " from s1@unknown.example at " + store.Addr + ", not retrieved: no verified sender stored",
		"dropped " + k2 + " from s2@other.example at " + store.Addr + ", not retrieved: denied by "} {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("the log does not say %q:\n%s", w, r.stderr)
		}
	}
	if r.code != 0 || countDir(t, filepath.Join(maildir, ".im2000", "held")) != 0 || store.Sessions() != 0 {
		t.Errorf("exit %d, %d held, the store saw %d sessions", r.code, countDir(t, filepath.Join(maildir, ".im2000", "held")), store.Sessions())
	}
	if l := parseSummary(t, e.run("", "im2000-fetch", "-d", maildir, "--summary").stdout); len(l) != 0 {
		t.Errorf("left: %+v", l)
	}
}

// TestHeldAccept: an entry accepted before a crash (its mark written, not
// yet released) is fetched by the next run; --accept KEY takes a key in
// capitals, and the key of a notification still pending.
func TestHeldAccept(t *testing.T) {
	store := hostile.Start(t, msrap.Protocol, func() hostile.Handler { return fakeStore("Subject: x\r\n\r\nheld-body\r\n") })
	e, maildir := heldEnv(t, store.Addr, 100)
	n := heldNotes(store.Addr, 0, 3)
	for i := range n {
		n[i].Notification.Size = nil // asked of the store once accepted
	}
	e.agentGives(t, n[0], n[1])
	if r := e.run("", "im2000-fetch", "-d", maildir); r.code != 0 || store.Sessions() != 0 {
		t.Fatalf("exit %d, %d sessions: %s", r.code, store.Sessions(), r.stderr)
	}
	k0, k1, k2 := agent.Key(&n[0]), agent.Key(&n[1]), agent.Key(&n[2])
	marks := filepath.Join(maildir, ".im2000", "mark.accepted")
	os.MkdirAll(marks, 0o700)
	if err := os.WriteFile(filepath.Join(marks, k0), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	e.agentGives(t)
	r := e.run("", "im2000-fetch", "-d", maildir)
	if r.code != 0 || len(maildirMessages(t, maildir)) != 1 || !strings.Contains(r.stderr, "released "+k0+" from s0@unknown.example at "+store.Addr+": accepted before") {
		t.Fatalf("accepted before a crash: exit %d, %d messages: %s", r.code, len(maildirMessages(t, maildir)), r.stderr)
	}
	r = e.run("", "im2000-fetch", "-d", maildir, "--accept", strings.ToUpper(k1))
	if r.code != 0 || len(maildirMessages(t, maildir)) != 2 {
		t.Fatalf("--accept %s: exit %d: %s", strings.ToUpper(k1), r.code, r.stderr)
	}
	e.agentGives(t, n[2]) // still pending when --accept names it
	r = e.run("", "im2000-fetch", "-d", maildir, "--accept", k2)
	if r.code != 0 || len(maildirMessages(t, maildir)) != 3 || strings.Contains(r.stderr, "held "+k2) {
		t.Fatalf("--accept of a pending one: exit %d, %d messages: %s", r.code, len(maildirMessages(t, maildir)), r.stderr)
	}
	e.agentGives(t)
	e.run("", "im2000-fetch", "-d", maildir) // prunes the marks of entries gone
	if countDir(t, marks) != 0 || countDir(t, filepath.Join(maildir, ".im2000", "held")) != 0 {
		t.Errorf("left: %d marks, %d held", countDir(t, marks), countDir(t, filepath.Join(maildir, ".im2000", "held")))
	}
}

// TestHeldPOP3: 27 held notifications show as 20 notices and one counting
// the other 7, each with a UIDL of its own (two of them share a message
// id, at two locations), the same at the next login; deleted notices give
// way to the next ones; once bob's policy denies the domain, the held
// entries and their "noticed" marks go, and no store was contacted.
func TestHeldPOP3(t *testing.T) {
	store := hostile.Start(t, msrap.Protocol, func() hostile.Handler { return fakeStore("Subject: x\r\n\r\nx\r\n") })
	notes := heldNotes(store.Addr, 0, 26)
	twin := notes[0]
	twin.Notification.StoreClear = wire.ServiceLocation{Domain: wire.DomainName{"unknown", "example"}}
	notes = append([]rnaqp.NotificationAndLocalData{twin}, notes...)
	ag := hostile.Start(t, rnaqp.Protocol, func() hostile.Handler { return fakeAgent(notes...) })
	pe := newEnv(t, "bob")
	state := filepath.Join(t.TempDir(), "pop3")
	pe.setConf("rna", ag.Addr)
	pe.setConf("pop3state", state)
	pe.setConf("routes", "_msrap._tcp.unknown.example "+store.Addr+"\n")
	pe.setConf("senderpolicy", "default hold")
	addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	_, plog := daemonEnv(t, pe.vars, addr, filepath.Join(bin, "im2000-pop3d"), "-l", addr)

	login := func(want string) (*pop3, []string) {
		t.Helper()
		p := dialPOP3(t, addr)
		if r := popLogin(p); r != want {
			t.Fatalf("login: %q, want %q", r, want)
		}
		p.cmd("UIDL")
		var uidls []string
		for _, l := range strings.Split(strings.TrimSpace(p.multi()), "\n") {
			if f := strings.Fields(l); len(f) == 2 {
				uidls = append(uidls, f[1])
			}
		}
		return p, uidls
	}
	p, uidls := login("+OK bob has 21 messages")
	seen := map[string]bool{}
	for _, u := range uidls {
		if seen[u] {
			t.Errorf("UIDL %s twice: %v", u, uidls)
		}
		seen[u] = true
	}
	if r := p.cmd("RETR 21"); !strings.HasPrefix(r, "+OK") || !strings.Contains(p.multi(), "Subject: held: 7 more messages") {
		t.Errorf("RETR 21: %q", r)
	}
	p.cmd("QUIT")
	p, again := login("+OK bob has 21 messages")
	sort.Strings(uidls)
	sort.Strings(again)
	if strings.Join(again, " ") != strings.Join(uidls, " ") {
		t.Errorf("UIDLs changed between logins:\n%v\n%v", uidls, again)
	}
	for i := 1; i <= 21; i++ {
		p.cmd("DELE " + strconv.Itoa(i))
	}
	p.cmd("QUIT")
	p, _ = login("+OK bob has 7 messages")
	p.cmd("QUIT")
	if n := countDir(t, filepath.Join(state, "bob", "mark.noticed")); n != 20 {
		t.Errorf("%d noticed marks, want 20", n)
	}

	writePolicy(t, filepath.Join(state, "bob", "senderpolicy"), "default hold\ndeny @unknown.example\n")
	p, _ = login("+OK bob has 0 messages")
	p.cmd("QUIT")
	if h, m := countDir(t, filepath.Join(state, "bob", "held")), countDir(t, filepath.Join(state, "bob", "mark.noticed")); h != 0 || m != 0 {
		t.Errorf("after the deny: %d held, %d noticed marks", h, m)
	}
	await(t, 5*time.Second, "pop3d logs the held ones dropped", func() bool {
		return strings.Count(plog.String(), ", not retrieved: denied by ") >= 27
	})
	if store.Sessions() != 0 {
		t.Errorf("the store saw %d sessions", store.Sessions())
	}
}
