package tests

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestSmarthost: alice writes to carol at a domain that exists but
// publishes no IM2000 service (nsd serves it without SRV records).
// notifyd hands the message to the smarthost: first down (carol's status
// is temporary, noserver), then a real postfix on its port, which delivers
// into carol's Maildir; the status says smtp, and the hand-off happened
// exactly once, however often notifyd's schedule came round.
func TestSmarthost(t *testing.T) {
	dns := startGatewayNSD(t, map[string]string{"carol.test": "@ IN A 127.0.0.1\n"})
	relay := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	h := newStoreHost(t, "listener", func(e *env) {
		e.setConf("resolvers", dns)
		e.setConf("smarthost", relay)
		e.setConf("retrybase", "1")
		e.setConf("retrymax", "2")
		e.setConf("resend", "2")
		e.setConf("timeout", "3")
	})
	h.setConf("storelocation", h.msrap)
	_, nlog := daemonEnv(t, h.vars, "", filepath.Join(bin, "im2000-notifyd"))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("notifyd:\n%s", nlog.String())
		}
	})
	id := h.inject("From: alice@example.org\nTo: carol@carol.test\nSubject: over SMTP\n\nhello carol\n", "carol@carol.test")
	state := func() string { return recipientStates(t, h.store, "alice", id)["carol@carol.test"] }
	await(t, 30*time.Second, "carol noserver while the smarthost is down", func() bool { return state() == "noserver/unread" })

	uid := postfixUID(t)
	pf := startPostfixAt(t, relay, fmt.Sprintf(`virtual_mailbox_domains = carol.test
virtual_mailbox_base = @DIR@/vmail
virtual_mailbox_maps = texthash:@DIR@/etc/vmailbox
virtual_uid_maps = static:%d
virtual_gid_maps = static:%d`, uid, uid), "", map[string]string{"vmailbox": "carol@carol.test carol/Maildir/\n"})
	await(t, 60*time.Second, "carol handed to SMTP", func() bool { return state() == "smtp/unread" })
	maildir := filepath.Join(pf.dir, "vmail", "carol", "Maildir")
	await(t, 30*time.Second, "carol's Maildir has the message", func() bool { return len(maildirMessages(t, maildir)) == 1 })
	time.Sleep(6 * time.Second) // three resend periods: nothing more may come
	msgs := maildirMessages(t, maildir)
	if len(msgs) != 1 || !strings.Contains(msgs[0], "Subject: over SMTP") || !strings.Contains(msgs[0], "hello carol") {
		t.Fatalf("carol's Maildir: %d messages: %q", len(msgs), msgs)
	}
	if state() != "smtp/unread" {
		t.Fatalf("carol's state %s after the hand-off", state())
	}
	b, _ := os.ReadFile(pf.log)
	if n := strings.Count(string(b), "to=<carol@carol.test>"); n != 1 {
		t.Errorf("postfix delivered to carol %d times, want once:\n%s", n, b)
	}
	if r := h.run("", "im2000-status"); !strings.Contains(r.stdout, "smtp") {
		t.Errorf("im2000-status does not show the hand-off:\n%s", r.stdout)
	}
	// The relay shown is the one the hand-off record names, with its
	// reply (postfix's queue id), not the smarthost setting in force now.
	h.setConf("smarthost", "other-relay.example:587")
	r := h.run("", "im2000-status", id)
	if !strings.Contains(r.stdout, "carol@carol.test\thanded to SMTP via "+relay+" (2.0.0 Ok: queued as ") {
		t.Errorf("im2000-status %s does not say where carol's copy went:\n%s%s", id, r.stdout, r.stderr)
	}
	if r := h.run("", "im2000-status", "--json", id); !strings.Contains(r.stdout, `"via": "`+relay+`"`) ||
		!strings.Contains(r.stdout, `"via_reply": "2.0.0 Ok: queued as `) {
		t.Errorf("im2000-status --json %s has no via:\n%s%s", id, r.stdout, r.stderr)
	}
}

// handOffSink is a relay that takes everything, and keeps what DATA brought;
// with stallQuit it does not answer QUIT.
type handOffSink struct {
	mu        sync.Mutex
	datas     []string
	conns     int
	stallQuit atomic.Bool
	silent    bool // accepts and never greets (a tarpit)
}

func startHandOffSink(t *testing.T, silent bool) (string, *handOffSink) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	k := &handOffSink{silent: silent}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			k.mu.Lock()
			k.conns++
			k.mu.Unlock()
			go k.serve(c)
		}
	}()
	return l.Addr().String(), k
}

func (k *handOffSink) serve(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	if k.silent {
		io.Copy(io.Discard, c)
		return
	}
	r := bufio.NewReader(c)
	c.Write([]byte("220 relay\r\n"))
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		switch up := strings.ToUpper(line); {
		case strings.HasPrefix(up, "EHLO"):
			c.Write([]byte("250-relay\r\n250 8BITMIME\r\n"))
		case strings.HasPrefix(up, "DATA"):
			c.Write([]byte("354 go\r\n"))
			var raw strings.Builder
			for {
				l, err := r.ReadString('\n')
				raw.WriteString(l)
				if err != nil || l == ".\r\n" {
					break
				}
			}
			k.mu.Lock()
			k.datas = append(k.datas, raw.String())
			k.mu.Unlock()
			c.Write([]byte("250 2.0.0 queued as SINK\r\n"))
		case strings.HasPrefix(up, "QUIT"):
			for k.stallQuit.Load() {
				time.Sleep(100 * time.Millisecond)
			}
			c.Write([]byte("221 bye\r\n"))
			return
		default:
			c.Write([]byte("250 ok\r\n"))
		}
	}
}

func (k *handOffSink) got() ([]string, int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]string(nil), k.datas...), k.conns
}

// TestSmarthostCrashAfter250: the state is on disk as soon as the relay
// has answered the final dot, before QUIT (the relay here never answers
// it), so notifyd killed then and started again hands nothing twice; and
// a bare CR in the body reaches the relay as CRLF (no "\r.\r\n" that a lax
// relay would take for the end of the data).
func TestSmarthostCrashAfter250(t *testing.T) {
	dns := startGatewayNSD(t, map[string]string{"carol.test": "@ IN A 127.0.0.1\n"})
	relay, k := startHandOffSink(t, false)
	k.stallQuit.Store(true)
	h := newStoreHost(t, "listener", func(e *env) {
		e.setConf("resolvers", dns)
		e.setConf("smarthost", relay)
		e.setConf("retrybase", "1")
		e.setConf("retrymax", "2")
		e.setConf("timeout", "60")
	})
	h.setConf("storelocation", h.msrap)
	id := h.inject("From: alice@example.org\nTo: carol@carol.test\nSubject: crash\n\nline\r.\r\nMAIL FROM:<ceo@bank.test>\r\n", "carol@carol.test")
	cmd, _ := daemonEnv(t, h.vars, "", filepath.Join(bin, "im2000-notifyd"))
	state := func() string { return recipientStates(t, h.store, "alice", id)["carol@carol.test"] }
	await(t, 30*time.Second, "carol recorded smtp while QUIT is unanswered", func() bool { return state() == "smtp/unread" })
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	k.stallQuit.Store(false)
	_, nlog := daemonEnv(t, h.vars, "", filepath.Join(bin, "im2000-notifyd"))
	await(t, 30*time.Second, "notifyd running again", func() bool { return strings.Contains(nlog.String(), "running:") })
	time.Sleep(3 * time.Second) // retrymax and more: a second hand-off would have come
	datas, _ := k.got()
	if len(datas) != 1 {
		t.Fatalf("the relay got the message %d times", len(datas))
	}
	if strings.Contains(datas[0], "\r.\r") || !strings.Contains(datas[0], "line\r\n..\r\nMAIL FROM:<ceo@bank.test>\r\n") {
		t.Fatalf("DATA as the relay got it: %q", datas[0])
	}
}

// TestSmarthostTarpitShutdown: a smarthost that accepts and never greets,
// six messages to one SMTP-only domain: the batch stops after the first
// session fails (one connection, not six), and SIGTERM during it waits for
// that session only.
func TestSmarthostTarpitShutdown(t *testing.T) {
	dns := startGatewayNSD(t, map[string]string{"carol.test": "@ IN A 127.0.0.1\n"})
	relay, k := startHandOffSink(t, true)
	h := newStoreHost(t, "listener", func(e *env) {
		e.setConf("resolvers", dns)
		e.setConf("smarthost", relay)
		e.setConf("timeout", "3")
		e.setConf("retrybase", "600")
	})
	h.setConf("storelocation", h.msrap)
	for i := 0; i < 6; i++ {
		h.inject(fmt.Sprintf("From: alice@example.org\nTo: carol@carol.test\nSubject: %d\n\nx\n", i), "carol@carol.test")
	}
	cmd, nlog := daemonEnv(t, h.vars, "", filepath.Join(bin, "im2000-notifyd"))
	await(t, 30*time.Second, "first connection", func() bool { _, n := k.got(); return n >= 1 })
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
	if _, n := k.got(); n != 1 {
		t.Fatalf("%d connections to the tarpit for one batch, want 1:\n%s", n, nlog.String())
	}
}
