package tests

import (
	"bufio"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestIMAPSessionLimits: im2000-imapd, under tcpserver and listening
// itself, with limitsEnv's limits (sessionsperaddr lowered to 2): a third
// session from one address is refused "* BYE [UNAVAILABLE]"; sessions
// that never log in, one of them sending a LOGIN a byte at a time
// (slowloris), are closed at authtimeout; a logged-in session sending
// NOOPs is closed at sessionlifetime; a client that connects to the
// implicit-TLS port and never sends its hello is closed at authtimeout.
// What is checked is that the server closed each (the idle timeout is
// 1800 s, the client waits 30 s at most) and logged which limit did it.
func TestIMAPSessionLimits(t *testing.T) {
	agent := newAgentHostFor(t, "listener", "example.net", "", "bob")
	for _, mode := range []string{"tcpserver", "listener"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			// Two deployments: under tcpserver the sessions per address are
			// counted in files of the state directory, and the holders of
			// the one would count against the stalled TLS client.
			var addr, tlsAddr string
			var logs, tlsLogs *syncBuffer
			for _, tls := range []bool{false, true} {
				e := limitsEnv(t)
				e.setConf("sessionsperaddr", "2")
				e.setConf("rna", agent.rnaqp)
				e.setConf("imapstate", filepath.Join(t.TempDir(), "imap"))
				if tls {
					withTLS(t, e)
					tlsAddr, tlsLogs = serve(t, e, mode, "im2000-imapd", "-tls")
				} else {
					addr, logs = serve(t, e, mode, "im2000-imapd")
				}
			}
			defer func() {
				if t.Failed() {
					t.Logf("server log:\n%s\n-tls server log:\n%s", logs.String(), tlsLogs.String())
				}
			}()
			time.Sleep(500 * time.Millisecond) // the readiness probes' sessions are over

			// greet opens a session from a loopback address and reads its
			// greeting.
			greet := func(from, addr string) (net.Conn, *bufio.Reader, string) {
				t.Helper()
				c, err := connFrom(from, addr)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { c.Close() })
				c.SetDeadline(time.Now().Add(30 * time.Second))
				r := bufio.NewReader(c)
				g, _ := r.ReadString('\n')
				return c, r, g
			}
			// closed reads until the server closes the session; it
			// reports whether it did within the client's 30 s.
			closed := func(c net.Conn, r io.Reader) bool {
				_, err := io.Copy(io.Discard, r)
				return err == nil || !isTimeout(err)
			}

			slow, slowR, g1 := greet("127.0.0.1", addr)
			idle, idleR, g2 := greet("127.0.0.1", addr)
			if !strings.HasPrefix(g1, "* OK") || !strings.HasPrefix(g2, "* OK") {
				t.Fatalf("the first two sessions from 127.0.0.1 were greeted %q, %q", g1, g2)
			}
			if _, _, g := greet("127.0.0.1", addr); !strings.HasPrefix(g, "* BYE [UNAVAILABLE]") {
				t.Errorf("a third session from 127.0.0.1 (sessionsperaddr 2) was greeted %q, want * BYE [UNAVAILABLE]", g)
			}
			go func() { // slowloris: a LOGIN that never ends
				for _, b := range []byte("a LOGIN bob bobpw and more and more") {
					if _, err := slow.Write([]byte{b}); err != nil {
						return
					}
					time.Sleep(300 * time.Millisecond)
				}
			}()

			user, userR, g := greet("127.0.0.2", addr)
			if !strings.HasPrefix(g, "* OK") {
				t.Fatalf("a session from 127.0.0.2 was greeted %q", g)
			}
			user.Write([]byte("a LOGIN bob bobpw\r\n"))
			if l, _ := userR.ReadString('\n'); !strings.HasPrefix(l, "a OK") {
				t.Fatalf("LOGIN from 127.0.0.2: %q", l)
			}
			userDone := make(chan bool, 1)
			go func() {
				for {
					if _, err := user.Write([]byte("n NOOP\r\n")); err != nil {
						break
					}
					time.Sleep(500 * time.Millisecond)
				}
			}()
			go func() { userDone <- closed(user, userR) }()

			stall, err := connFrom("127.0.0.1", tlsAddr) // no ClientHello, ever
			if err != nil {
				t.Fatal(err)
			}
			defer stall.Close()
			stall.SetDeadline(time.Now().Add(30 * time.Second))

			if !closed(slow, slowR) {
				t.Errorf("a session sending LOGIN a byte at a time was not closed")
			}
			if !closed(idle, idleR) {
				t.Errorf("a session that never logged in was not closed")
			}
			if !closed(stall, stall) {
				t.Errorf("a TLS session whose client never sent its hello was not closed")
			}
			if !<-userDone {
				t.Errorf("a logged-in session sending NOOPs was not closed at its lifetime")
			}
			await(t, 5*time.Second, "the limits' log lines", func() bool {
				return strings.Count(logs.String(), "not authenticated within 2s, closed") >= 2 &&
					strings.Contains(logs.String(), "session lifetime of 5s over, closed") &&
					strings.Contains(tlsLogs.String(), "not authenticated within 2s")
			})
			if !strings.Contains(logs.String(), "im2000-imapd: warning: refused: ") {
				t.Errorf("the refused session is not logged")
			}
		})
	}
}

// isTimeout reports a read that ran out of the client's own time.
func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
