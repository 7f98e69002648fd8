package session

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"im2000/lib/tlsconf"
	"im2000/lib/tlsconf/tlstest"
	"im2000/lib/wire/msoap"
)

// acceptSignal tells, on accepted, of each connection Accept returned.
type acceptSignal struct {
	net.Listener
	accepted chan struct{}
}

func (l acceptSignal) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.accepted <- struct{}{}
	}
	return c, err
}

// handshakeServer is an implicit-TLS server with an idle timeout of an
// hour, on an acceptSignal listener; logs collects its log.
func handshakeServer(t *testing.T, cfg *tls.Config) (srv *Server, l acceptSignal, done chan struct{}, logs func() string) {
	var mu sync.Mutex
	var b strings.Builder
	var committed []string
	var aborts int
	srv = &Server{Proto: msoap.Protocol, Timeout: time.Hour, MaxPDU: 1 << 20, MaxConns: 10, TLS: cfg,
		NewHandler: func(*Session) Handler { return &toy{mu: &mu, committed: &committed, aborts: &aborts} },
		Log: func(f string, a ...any) {
			mu.Lock()
			defer mu.Unlock()
			fmt.Fprintf(&b, f+"\n", a...)
		}}
	nl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l = acceptSignal{nl, make(chan struct{}, 10)}
	done = make(chan struct{})
	go func() { srv.ServeListener(l); close(done) }()
	t.Cleanup(func() { srv.Shutdown(); l.Close(); <-done })
	return srv, l, done, func() string { mu.Lock(); defer mu.Unlock(); return b.String() }
}

func testCerts(t *testing.T) *tlsconf.Certs {
	dir := t.TempDir()
	ca := tlstest.NewCA(t)
	ca.WriteLeaf(t, filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem"), 5, "127.0.0.1")
	certs := &tlsconf.Certs{CertFile: filepath.Join(dir, "c.pem"), KeyFile: filepath.Join(dir, "k.pem")}
	if err := certs.Reload(true); err != nil {
		t.Fatal(err)
	}
	return certs
}

// TestShutdownDuringHandshake: a session still in its TLS handshake (a
// client that never sends its hello) ends at Shutdown, as one waiting for
// a command does; it used to be untracked, and ServeListener (so a
// SIGTERM'd server) waited for the idle timeout, here an hour. A session
// whose handshake begins after the Shutdown ends at once too.
func TestShutdownDuringHandshake(t *testing.T) {
	for _, when := range []string{"in the handshake", "before the handshake"} {
		t.Run(when, func(t *testing.T) {
			srv, l, done, logs := handshakeServer(t, testCerts(t).Config())
			if when == "before the handshake" {
				srv.Shutdown()
			}
			c, err := net.Dial("tcp", l.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			<-l.accepted
			if when == "in the handshake" {
				tracked := func() int { srv.mu.Lock(); defer srv.mu.Unlock(); return len(srv.conns) }
				for i := 0; tracked() == 0; i++ {
					if i == 3000 {
						t.Fatal("a session in its handshake is not tracked: Shutdown cannot reach it")
					}
					time.Sleep(10 * time.Millisecond)
				}
				srv.Shutdown()
			}
			l.Close()
			select {
			case <-done:
			case <-time.After(30 * time.Second): // a bound, not a measure: broken, it is an hour
				t.Fatalf("ServeListener did not return after Shutdown with a session in its handshake\n%s", logs())
			}
			c.SetReadDeadline(time.Now().Add(30 * time.Second))
			if _, err := io.ReadAll(c); err != nil {
				t.Errorf("the handshaking connection was not closed: %v", err)
			}
			if !strings.Contains(logs(), "TLS handshake failed") || !strings.Contains(logs(), "shutting down") {
				t.Errorf("log: %q", logs())
			}
		})
	}
}

// TestPanicInHandshake: a panic during the TLS handshake (here in
// GetCertificate) ends that session with an alert, not the process; the
// next session is served.
func TestPanicInHandshake(t *testing.T) {
	certs := testCerts(t)
	var calls atomic.Int32
	cfg := certs.Config()
	cfg.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		if calls.Add(1) == 1 {
			var m map[string]int
			m["x"]++ // assignment to entry in nil map
		}
		return certs.Certificate(), nil
	}
	_, l, _, logs := handshakeServer(t, cfg)
	dial := func() error {
		c, err := tls.Dial("tcp", l.Addr().String(), &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			return err
		}
		defer c.Close()
		cl := NewClient(c, msoap.Protocol, 10*time.Second)
		_, err = cl.Call(&msoap.Authenticate{Account: "alice", Password: "pw"})
		return err
	}
	if err := dial(); err == nil {
		t.Fatal("the session whose handshake panicked went on")
	}
	if err := dial(); err != nil {
		t.Fatalf("the session after: %v\n%s", err, logs())
	}
	if !strings.Contains(logs(), "alert: panic in MSOAP session with 127.0.0.1:") || !strings.Contains(logs(), "assignment to entry in nil map") {
		t.Errorf("log: %q", logs())
	}
}
