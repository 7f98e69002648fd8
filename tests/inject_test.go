package tests

import (
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"im2000/lib/msgid"
	"im2000/lib/store"
)

func readMessage(t *testing.T, e *env, account, id string) (*store.Envelope, string) {
	t.Helper()
	s, err := store.Open(e.store)
	if err != nil {
		t.Fatal(err)
	}
	a, err := s.Account(account)
	if err != nil {
		t.Fatal(err)
	}
	mid, err := msgid.Parse(id)
	if err != nil {
		t.Fatal(err)
	}
	m, err := a.Open(mid)
	if err != nil {
		t.Fatalf("message %s: %v", id, err)
	}
	defer m.Close()
	b, _ := io.ReadAll(m.Body())
	return m.Env, string(b)
}

func TestInjectRecipientsAndHeaders(t *testing.T) {
	e := newEnv(t, "alice")
	id := e.inject("To: Bob <bob@example.net>\nCc: carol@example.com\nBcc: dave@example.com\nSubject: lunch\n\nat noon?\n.\nnot part of it\n", "-t", "-F", "Alice Example", "erin@example.net")
	env, body := readMessage(t, e, "alice", id)
	var rcpts []string
	for _, r := range env.Recipients {
		rcpts = append(rcpts, r.Addr.String())
	}
	if got := strings.Join(rcpts, " "); got != "erin@example.net bob@example.net carol@example.com dave@example.com" {
		t.Errorf("recipients = %s", got)
	}
	if env.Sender.String() != "alice@example.org" {
		t.Errorf("sender = %s", env.Sender)
	}
	for _, want := range []string{"From: \"Alice Example\" <alice@example.org>\r\n", "Message-Id: <" + id + "@example.org>\r\n", "Date: ", "\r\n\r\nat noon?\r\n"} {
		if !strings.Contains(body, want) {
			t.Errorf("stored message lacks %q:\n%s", want, body)
		}
	}
	if strings.Contains(body, "dave@") || strings.Contains(body, "not part") {
		t.Errorf("Bcc or text after the dot line was stored:\n%s", body)
	}

	// -i keeps the dot line; -f sets From (an address the admin allows
	// alice, see TestFromRule); a bare local part gets "me".
	os.Mkdir(filepath.Join(e.conf, "senders"), 0o755)
	e.setConf("senders/alice", "list-owner@example.org")
	id = e.inject("Subject: dots\n\n.\nafter\n", "-i", "-f", "list-owner@example.org", "frank")
	env, body = readMessage(t, e, "alice", id)
	if !strings.Contains(body, "\r\n.\r\nafter\r\n") || !strings.Contains(body, "From: <list-owner@example.org>") || env.Recipients[0].Addr.String() != "frank@example.org" {
		t.Errorf("-i/-f/bare recipient: %v\n%s", env.Recipients, body)
	}

	// Lists, with and without personal recipients.
	e.setConf("lists/golang", "alice")
	e.setConf("lists/im2000-dev", "*")
	id = e.inject("Subject: to the list\n\nhello list\n", "-l", "Golang", "-l", "im2000-dev")
	env, _ = readMessage(t, e, "alice", id)
	if len(env.Lists) != 2 || env.Lists[0].Name != "golang" || len(env.Recipients) != 0 {
		t.Errorf("lists = %v, recipients = %v", env.Lists, env.Recipients)
	}
	s, _ := store.Open(e.store)
	if l, err := s.ScanList("golang", env.Submitted, time.Now().Add(time.Minute)); err != nil || len(l) != 1 || l[0].ID != env.Lists[0].ID {
		t.Errorf("ScanList = %v, %v", l, err)
	}
}

func TestInjectExitCodes(t *testing.T) {
	e := newEnv(t, "alice")
	e.setConf("databytes", "1000")
	cases := []struct {
		name  string
		stdin string
		args  []string
		code  int
		says  string
	}{
		{"no recipients", "Subject: x\n\nx\n", nil, 100, "no recipients"},
		{"no recipients with -t", "Subject: x\n\nx\n", []string{"-t"}, 100, "no recipients"},
		{"malformed argument", "x\n", []string{"bob@@example.org"}, 100, "bad address"},
		{"malformed To", "To: bob@\n\nx\n", []string{"-t"}, 100, "bad address"},
		{"too large", strings.Repeat("x", 2000) + "\n", []string{"bob@example.net"}, 100, "size limit"},
		{"unknown option", "x\n", []string{"-Q"}, 100, "unknown option"},
		{"bad list name", "x\n", []string{"-l", "a/b"}, 100, "list name"},
		{"list not hosted", "x\n", []string{"-l", "unknown"}, 100, "may not post"},
		{"queue listing", "", []string{"-bp"}, 100, "not supported"},
	}
	for _, c := range cases {
		r := e.run(c.stdin, "im2000-inject", c.args...)
		if r.code != c.code || !strings.HasPrefix(r.stderr, "im2000-inject: ") || !strings.Contains(r.stderr, c.says) {
			t.Errorf("%s: exit %d, stderr %q; want exit %d saying %q", c.name, r.code, r.stderr, c.code, c.says)
		}
	}
	if ents, _ := os.ReadDir(filepath.Join(e.store, "alice", "msg")); len(ents) != 0 {
		t.Errorf("failed injections left %d messages", len(ents))
	}

	e.setConf("databytes", "1000000")
	e.setConf("quota", "700")
	e.inject(strings.Repeat("y", 300)+"\n", "bob@example.net")
	if r := e.run(strings.Repeat("y", 300)+"\n", "im2000-inject", "bob@example.net"); r.code != 111 || !strings.Contains(r.stderr, "quota") {
		t.Errorf("over quota: exit %d, %q; want 111", r.code, r.stderr)
	}

	missing := newEnv(t, "alice")
	os.Remove(missing.store)
	if r := missing.run("x\n", "im2000-inject", "bob@example.net"); r.code != 111 || !strings.Contains(r.stderr, "mkdir") {
		t.Errorf("missing store: exit %d, %q; want 111 saying what to do", r.code, r.stderr)
	}
	if r := e.run("", "im2000-inject", "-h"); r.code != 0 || !strings.Contains(r.stdout, "usage: im2000-inject") {
		t.Errorf("-h: exit %d, %q", r.code, r.stdout)
	}
}

// TestSendmailName runs im2000-inject under the name sendmail with the flags
// mail user agents pass.
func TestSendmailName(t *testing.T) {
	e := newEnv(t, "alice")
	dir := t.TempDir()
	link := filepath.Join(dir, "sendmail")
	if err := os.Symlink(filepath.Join(bin, "im2000-inject"), link); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(link, "-oem", "-oi", "-B", "8BITMIME", "-f", "alice@example.org", "--", "bob@example.net")
	cmd.Env = e.vars
	cmd.Stdin = strings.NewReader("Subject: via sendmail\n\nhi\n")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("sendmail: %v: %s", err, out)
	}
	env, _ := readMessage(t, e, "alice", strings.TrimSpace(string(out)))
	if env.Recipients[0].Addr.String() != "bob@example.net" {
		t.Errorf("recipients = %v", env.Recipients)
	}
	cmd = exec.Command(link, "-Z")
	cmd.Env = e.vars
	out, _ = cmd.CombinedOutput()
	if !strings.HasPrefix(string(out), "sendmail: ") {
		t.Errorf("errors do not carry the name it was called by: %q", out)
	}
}

// TestMutt sends with a real mail user agent configured to use im2000-inject.
func TestMutt(t *testing.T) {
	mutt, err := exec.LookPath("mutt")
	if err != nil {
		t.Fatal("mutt is not installed: run make deps (tests/deps.sh) first")
	}
	e := newEnv(t, "alice")
	cmd := exec.Command(mutt, "-n", "-F", "/dev/null",
		"-e", "set sendmail='"+filepath.Join(bin, "im2000-inject")+"'",
		"-e", "set from='alice@example.org' realname='Alice' use_from=yes record='' charset='utf-8'",
		"-s", "mutt says hi", "--", "bob@example.net", "carol@example.com")
	cmd.Env = append(e.vars, "TERM=dumb")
	cmd.Stdin = strings.NewReader("Hello from mutt.\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mutt: %v: %s", err, out)
	}
	ents, _ := os.ReadDir(filepath.Join(e.store, "alice", "msg"))
	if len(ents) != 1 {
		t.Fatalf("%d messages in the archive after mutt sent one", len(ents))
	}
	env, body := readMessage(t, e, "alice", ents[0].Name())
	if len(env.Recipients) != 2 || !strings.Contains(body, "Subject: mutt says hi") || !strings.Contains(body, "Hello from mutt.") {
		t.Errorf("recipients %v, message:\n%s", env.Recipients, body)
	}
}

func TestStatusViews(t *testing.T) {
	e := newEnv(t, "alice")
	id1 := e.inject("Subject: first\n\n1\n", "bob@example.net", "carol@example.com")
	e.setConf("lists/news", "alice")
	id2 := e.inject("Subject: =?utf-8?q?caf=C3=A9?=\n\n2\n", "-l", "news", "dave@example.net")

	// Mark recipients the way notifyd and retrieved will.
	s, _ := store.Open(e.store)
	a, _ := s.Account("alice")
	mid1, _ := msgid.Parse(id1)
	a.Update(mid1, func(_ *store.Envelope, st *store.Status) error {
		st.Recipients[0].Notification, st.Recipients[0].Read = store.Silenced, store.ReadAll
		st.Recipients[1].Notification = store.NoUser
		return nil
	})

	r := e.run("", "im2000-status")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if r.code != 0 || len(lines) != 2 {
		t.Fatalf("status: exit %d, %q, %s", r.code, r.stdout, r.stderr)
	}
	f := strings.Split(lines[0], "\t")
	if f[0] != id1 || f[2] != "first" || f[3] != "2" || f[4] != "1 nouser, 1 silenced" {
		t.Errorf("row 1 = %q", f)
	}
	f = strings.Split(lines[1], "\t")
	if f[0] != id2 || f[2] != "café" || f[4] != "1 unprocessed, list news read 0" {
		t.Errorf("row 2 = %q", f)
	}
	if r := e.run("", "im2000-status", "--failed"); strings.Count(r.stdout, "\n") != 1 || !strings.HasPrefix(r.stdout, id1) {
		t.Errorf("--failed = %q", r.stdout)
	}
	if r := e.run("", "im2000-status", "--pending"); strings.Count(r.stdout, "\n") != 1 || !strings.HasPrefix(r.stdout, id2) {
		t.Errorf("--pending = %q", r.stdout)
	}
	if r := e.run("", "im2000-status", "--since", "1h"); strings.Count(r.stdout, "\n") != 2 {
		t.Errorf("--since 1h = %q", r.stdout)
	}
	if r := e.run("", "im2000-status", "--since", "2099-01-01"); r.code != 0 || r.stdout != "" {
		t.Errorf("--since 2099-01-01 = %q", r.stdout)
	}
	r = e.run("", "im2000-status", id1)
	if !strings.Contains(r.stdout, "bob@example.net\tsilenced\treadall\tpinned\t0\t-\t-\n") || !strings.Contains(r.stdout, "carol@example.com\tnouser\tunread") {
		t.Errorf("per recipient = %q", r.stdout)
	}
	r = e.run("", "im2000-status", "--json")
	var views []struct {
		ID         string
		Subject    string
		Recipients []struct{ Address, Notification, Read string }
		Lists      []struct{ Name string }
	}
	if err := json.Unmarshal([]byte(r.stdout), &views); err != nil || len(views) != 2 || views[0].Recipients[0].Read != "readall" || views[1].Lists[0].Name != "news" {
		t.Errorf("--json = %v (%v): %s", views, err, r.stdout)
	}
	for _, bad := range [][]string{{"nothex"}, {"--since", "yesterday"}, {"--bogus"}, {msgid.New().String()}} {
		if r := e.run("", "im2000-status", bad...); r.code != 100 || !strings.HasPrefix(r.stderr, "im2000-status: ") {
			t.Errorf("%v: exit %d, %q; want 100", bad, r.code, r.stderr)
		}
	}
}
