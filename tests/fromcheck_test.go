package tests

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"im2000/lib/wire"
	"im2000/lib/wire/msoap"
)

// The store vouches only for its own accounts (DESIGN.md section 3): a
// From that is not the account's address, nor one senders/ACCOUNT allows
// it, is refused by every way into the store, and nothing is kept.
const forged = "From: \"Bank CEO\" <ceo@bank.example>\nTo: bob@example.net\nSubject: urgent transfer\n\nPay the invoice today.\n"

func allowSenders(t *testing.T, e *env, lines string) {
	os.Mkdir(filepath.Join(e.conf, "senders"), 0o755)
	e.setConf("senders/alice", lines)
}

func msgCount(t *testing.T, store string) int {
	t.Helper()
	ents, _ := os.ReadDir(filepath.Join(store, "alice", "msg"))
	if tmp, _ := os.ReadDir(filepath.Join(store, "alice", "tmp")); len(tmp) != 0 {
		t.Errorf("refused submissions left %d temporary files", len(tmp))
	}
	return len(ents)
}

func TestFromRuleInject(t *testing.T) {
	e := newEnv(t, "alice")
	allowSenders(t, e, "# alice also runs these\npostmaster@example.org\n@lists.example.org")
	file := filepath.Join(e.conf, "senders", "alice")
	refused := []struct{ name, stdin, says string }{
		{"a stranger's From", forged, file},
		{"another account's name", "From: Alice@example.org\n\nx\n", file},
		{"two From, one not hers", "From: alice@example.org, ceo@bank.example\nSender: alice@example.org\n\nx\n", file},
		{"two From, no Sender", "From: alice@example.org, postmaster@example.org\n\nx\n", "add Sender: "},
		{"a stranger's Sender", "From: alice@example.org\nSender: ceo@bank.example\n\nx\n", file},
		{"a group naming no one", "From: Bank CEO:;\n\nx\n", file},
	}
	for _, c := range refused {
		r := e.run(c.stdin, "im2000-inject", "bob@example.net")
		if r.code != 100 || !strings.HasPrefix(r.stderr, "im2000-inject: ") || !strings.Contains(r.stderr, c.says) || !strings.Contains(r.stderr, "alice@example.org") {
			t.Errorf("%s: exit %d, %q; want 100 saying %q and her own address", c.name, r.code, r.stderr, c.says)
		}
	}
	if r := e.run("Subject: -f fills From\n\nx\n", "im2000-inject", "-f", "ceo@bank.example", "bob@example.net"); r.code != 100 || !strings.Contains(r.stderr, "ceo@bank.example") {
		t.Errorf("-f a stranger's address: exit %d, %q", r.code, r.stderr)
	}
	if n := msgCount(t, e.store); n != 0 {
		t.Fatalf("%d messages committed for refused ones", n)
	}

	for _, stdin := range []string{
		"From: \"Bank CEO\" <alice@EXAMPLE.org>\n\nthe name is hers to choose\n",
		"From: Postmaster <postmaster@example.org>\n\nlisted\n",
		"From: news@Lists.example.org\n\nlisted domain\n",
		"From: alice@example.org, postmaster@example.org\nSender: alice@example.org\n\nboth hers\n",
		"Subject: no From\n\none is made from the account\n",
	} {
		e.inject(stdin, "bob@example.net")
	}
	id := e.inject("Subject: -f\n\nx\n", "-f", "postmaster", "bob@example.net")
	if _, body := readMessage(t, e, "alice", id); !strings.Contains(body, "From: <postmaster@example.org>\r\n") {
		t.Errorf("-f of a listed address:\n%s", body)
	}
	if n := msgCount(t, e.store); n != 6 {
		t.Errorf("%d messages, want 6", n)
	}

	e.setConf("senders/alice", "not an address")
	if r := e.run("Subject: x\n\nx\n", "im2000-inject", "bob@example.net"); r.code != 111 || !strings.Contains(r.stderr, file) {
		t.Errorf("a broken senders file: exit %d, %q; want 111 naming it", r.code, r.stderr)
	}
}

// TestFromRuleSubmitd: im2000-submitd answers the last chunk
// errornotpermitted, and remote im2000-inject exits 100 saying why.
func TestFromRuleSubmitd(t *testing.T) {
	h := newStoreHost(t, "tcpserver", func(e *env) { allowSenders(t, e, "postmaster@example.org") })
	cl := newEnv(t, "alice")
	os.Remove(cl.store)
	cl.vars = append(cl.vars[:0:0], "IM2000_CONF="+cl.conf, "IM2000_ACCOUNT=alice", "PATH="+os.Getenv("PATH"), "HOME="+t.TempDir(), "TZ=UTC")
	cl.setConf("remote", h.msoap)
	cl.setConf("password", "alicepw")
	cl.setConf("sentlog", filepath.Join(t.TempDir(), "sent"))

	r := cl.run(forged, "im2000-inject", "-t")
	if r.code != 100 || !strings.HasPrefix(r.stderr, "im2000-inject: ") || !strings.Contains(r.stderr, "errornotpermitted") || !strings.Contains(r.stderr, "senders/alice") {
		t.Errorf("remote inject of a forged From: exit %d, %q", r.code, r.stderr)
	}
	if n := msgCount(t, h.store); n != 0 {
		t.Fatalf("%d messages at the store after a refused one", n)
	}
	cl.inject("From: Alice <alice@example.org>\nTo: bob@example.net\n\nmine\n", "-t")
	cl.inject("From: postmaster@example.org\nTo: bob@example.net\n\nlisted\n", "-t")
	if n := msgCount(t, h.store); n != 2 {
		t.Fatalf("%d messages at the store, want 2", n)
	}

	// Raw MSOAP: the store checks what it stores, as sent, including what
	// a trusting reader would take for a From after a line that is not a
	// field. The session goes on after a refusal.
	c := login(t, h, "alice")
	envelope := &msoap.SubmitEnvelope{Recipients: []wire.MailBox{mb("bob", "example.net")}, Lifetime: 86400}
	for _, msg := range []string{
		strings.ReplaceAll(forged, "\n", "\r\n"),
		"hello\r\nFrom: ceo@bank.example\r\n\r\nbody\r\n",
		"Subject: x\rFrom: ceo@bank.example\r\n\r\nbody\r\n",
		"From: alice@example.org\r\nSender:\r\n ceo@bank.example\r\n\r\nbody\r\n",
	} {
		call(t, c, envelope, msoap.NoError, false)
		for off := 0; off < len(msg); off += 10 {
			end := min(off+10, len(msg))
			want, abort := msoap.NoError, false
			if end == len(msg) {
				want, abort = msoap.ErrorNotPermitted, true
			}
			call(t, c, &msoap.SubmitMsgChunk{IsLast: end == len(msg), Offset: uint64(off), Data: []byte(msg[off:end])}, want, abort)
		}
	}
	if left := archiveFiles(t, h.store); strings.Count(left, "alice/msg/") != 2 || strings.Contains(left, "tmp/") {
		t.Fatalf("after refused submissions: %s", left)
	}
	submit(t, c, []byte("From: alice@example.org\r\nSubject: still served\r\n\r\nx\r\n"), 7, envelope)
	submit(t, c, []byte("no header at all"), 5, envelope)
}

// TestFromRuleSMTP drives im2000-smtpd with swaks: 550 5.7.1 at DATA.
func TestFromRuleSMTP(t *testing.T) {
	if _, err := exec.LookPath("swaks"); err != nil {
		t.Fatal("swaks is not installed: run tests/deps.sh")
	}
	e, addr := startSMTPD(t)
	allowSenders(t, e, "@lists.example.org")
	host, port, _ := net.SplitHostPort(addr)
	swaks := func(args ...string) string {
		out, _ := exec.Command("swaks", append([]string{"--server", host, "--port", port, "--auth", "PLAIN",
			"--auth-user", "alice", "--auth-password", "alicepw", "--to", "bob@example.net"}, args...)...).CombinedOutput()
		return string(out)
	}
	out := swaks("--from", "alice@example.org", "--h-From:", `"Bank CEO" <ceo@bank.example>`)
	if !strings.Contains(out, "<** 550 5.7.1 ") || !strings.Contains(out, "senders/alice") {
		t.Errorf("a forged From over SMTP:\n%s", out)
	}
	if out := swaks("--from", "ceo@bank.example"); !strings.Contains(out, "<** 550 5.7.1 ") {
		t.Errorf("swaks' own From from a stranger's MAIL FROM:\n%s", out)
	}
	if n := msgCount(t, e.store); n != 0 {
		t.Fatalf("%d messages after refused ones", n)
	}
	for _, from := range []string{"Alice <alice@example.org>", "news@lists.example.org"} {
		if out := swaks("--from", "alice@example.org", "--h-From:", from); !strings.Contains(out, "250 2.0.0 OK: stored") {
			t.Errorf("From: %s:\n%s", from, out)
		}
	}
	if n := msgCount(t, e.store); n != 2 {
		t.Errorf("%d messages, want 2", n)
	}
}
