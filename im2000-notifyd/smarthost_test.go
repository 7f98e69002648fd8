package main

import (
	"bufio"
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"im2000/lib/locate"
	"im2000/lib/store"
	"im2000/lib/tlsconf"
)

// fakeRelay is a hostile smarthost: serve runs on each connection; the
// lines the client sent arrive on the channel.
func fakeRelay(t *testing.T, serve func(c net.Conn, r *bufio.Reader, saw chan<- string)) (string, <-chan string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	saw := make(chan string, 100)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(time.Minute))
				serve(c, bufio.NewReader(c), saw)
			}()
		}
	}()
	return l.Addr().String(), saw
}

// plainRelay answers like a relay without STARTTLS, and accepts all.
func plainRelay(c net.Conn, r *bufio.Reader, saw chan<- string) {
	c.Write([]byte("220 relay\r\n"))
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		select {
		case saw <- strings.TrimRight(line, "\r\n"):
		default:
		}
		switch {
		case strings.HasPrefix(line, "EHLO"):
			c.Write([]byte("250-relay\r\n250 AUTH PLAIN\r\n")) // no STARTTLS
		case strings.HasPrefix(line, "DATA"):
			c.Write([]byte("354 go on\r\n"))
			for {
				l, err := r.ReadString('\n')
				if err != nil || l == ".\r\n" {
					break
				}
			}
			c.Write([]byte("250 ok\r\n"))
		case strings.HasPrefix(line, "QUIT"):
			c.Write([]byte("221 bye\r\n"))
			return
		default:
			c.Write([]byte("250 ok\r\n"))
		}
	}
}

// TestSmarthostDowngrade: a smarthost named in tlsrequire whose STARTTLS
// was stripped (a man in the middle) is refused as tlsdowngrade, and is
// sent nothing but EHLO; one not required still gets cleartext, the
// opportunistic case.
func TestSmarthostDowngrade(t *testing.T) {
	relay, saw := fakeRelay(t, plainRelay)
	cfg := testConfig()
	cfg.loc = &locate.Locator{TLS: tlsconf.NewClient(nil, []string{"smarthost.example"}, nil)}
	s := &smarthost{addr: relay, host: "smarthost.example", me: "example.org"}
	c, _, err := s.dial(context.Background(), cfg)
	if err == nil {
		c.Close()
	}
	if !errors.Is(err, tlsconf.ErrDowngrade) || sessionState(err) != store.TLSDowngrade {
		t.Fatalf("dial: %v (%v), want a TLS downgrade refused", err, sessionState(err))
	}
	for len(saw) > 0 {
		if l := <-saw; !strings.HasPrefix(l, "EHLO") {
			t.Errorf("the stripped relay was sent %q", l)
		}
	}
	s.host = "other.example"
	c, _, err = s.dial(context.Background(), cfg)
	if err != nil {
		t.Fatalf("a relay not required to use TLS: %v", err)
	}
	c.Close()
}

// TestSmarthostFlood: a relay that never ends its greeting ("220-" lines
// for ever; go-smtp bounds the line, not the reply) fails the hand-off
// as temporary after maxRelayRead octets, instead of growing notifyd's
// heap (2.4 GB in 20 s before).
func TestSmarthostFlood(t *testing.T) {
	relay, _ := fakeRelay(t, func(c net.Conn, _ *bufio.Reader, _ chan<- string) {
		line := []byte("220-" + strings.Repeat("A", 990) + "\r\n")
		for {
			if _, err := c.Write(line); err != nil {
				return
			}
		}
	})
	cfg := testConfig()
	cfg.timeout = time.Minute // the bound is the size, not the clock
	s := &smarthost{addr: relay, host: "127.0.0.1", me: "example.org"}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, _, err := s.dial(ctx, cfg)
	if !errors.Is(err, errRelayFlood) || sessionState(err) != store.NoServer {
		t.Fatalf("dial: %v, want %v (noserver)", err, errRelayFlood)
	}
}

// TestSmarthostDeadline: a relay that never greets holds the hand-off for
// the session's deadline (from the timeout setting), not for go-smtp's
// own 5 minutes per command, which replaced it before.
func TestSmarthostDeadline(t *testing.T) {
	relay, _ := fakeRelay(t, func(c net.Conn, r *bufio.Reader, _ chan<- string) { r.ReadByte() })
	cfg := testConfig()
	s := &smarthost{addr: relay, host: "127.0.0.1", me: "example.org"}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, _, err := s.dial(ctx, cfg)
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || sessionState(err) != store.NoServer {
			t.Fatalf("dial: %v, want a timeout (noserver)", err)
		}
	case <-time.After(45 * time.Second):
		t.Fatal("the hand-off outlived its 1 s deadline by 45 s")
	}
}

// TestSmarthostQuotedRcpt: a local part that needs quoting is sent
// quoted: "> ORCPT=..." in it cannot end the path and add ESMTP
// parameters to the relay's RCPT.
func TestSmarthostQuotedRcpt(t *testing.T) {
	relay, saw := fakeRelay(t, plainRelay)
	_, l := queued(t, 1)
	l.entries[0].local = "x> ORCPT=rfc822;evil@x.test NOTIFY=NEVER"
	cfg := testConfig()
	cfg.timeout = 10 * time.Second
	s := &smarthost{addr: relay, host: "127.0.0.1", me: "example.org"}
	if st, _ := s.send(cfg, "example.net", l.entries); st[0] != store.SMTP {
		t.Fatalf("state %v", st[0])
	}
	want := `RCPT TO:<"x> ORCPT=rfc822;evil@x.test NOTIFY=NEVER"@example.net>`
	for len(saw) > 0 {
		if line := <-saw; strings.HasPrefix(line, "RCPT") {
			if line != want {
				t.Fatalf("sent %q, want %q", line, want)
			}
			return
		}
	}
	t.Fatal("no RCPT sent")
}

// asRemote makes the test's loopback relays count as another host's,
// reached over a path someone may sit on, for the rest of the test.
func asRemote(t *testing.T) {
	saved := isLoopback
	isLoopback = func(net.IP) bool { return false }
	t.Cleanup(func() { isLoopback = saved })
}
