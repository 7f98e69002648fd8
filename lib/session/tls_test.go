package session

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"im2000/lib/tlsconf"
	"im2000/lib/tlsconf/tlstest"
	"im2000/lib/wire/msoap"
)

// tlsServer listens with implicit TLS; logs collects the server's log.
func tlsServer(t testing.TB, timeout time.Duration, limits Limits) (addr string, ca *tlstest.CA, logs func() string) {
	return testServer(t, timeout, limits, true)
}

// testServer is tlsServer, in cleartext unless useTLS.
func testServer(t testing.TB, timeout time.Duration, limits Limits, useTLS bool) (addr string, ca *tlstest.CA, logs func() string) {
	dir := t.TempDir()
	ca = tlstest.NewCA(t)
	ca.WriteLeaf(t, filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem"), 5, "127.0.0.1")
	certs := &tlsconf.Certs{CertFile: filepath.Join(dir, "c.pem"), KeyFile: filepath.Join(dir, "k.pem")}
	if err := certs.Reload(true); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var b strings.Builder
	var committed []string
	var aborts int
	srv := &Server{Proto: msoap.Protocol, Timeout: timeout, MaxPDU: 1 << 20, MaxConns: 1000, Limits: limits, TLS: certs.Config(),
		NewHandler: func(*Session) Handler { return &toy{mu: &mu, committed: &committed, aborts: &aborts} },
		Log: func(f string, a ...any) {
			mu.Lock()
			defer mu.Unlock()
			b.WriteString(strings.TrimSpace(fmt.Sprintf(f, a...)) + "\n")
		}}
	if !useTLS {
		srv.TLS = nil
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.ServeListener(l)
	t.Cleanup(func() { srv.Shutdown(); l.Close() })
	return l.Addr().String(), ca, func() string { mu.Lock(); defer mu.Unlock(); return b.String() }
}

// TestTLSSession: a session over implicit TLS works as one in cleartext,
// and the handler sees it as TLS (PasswordOK from anywhere).
func TestTLSSession(t *testing.T) {
	addr, ca, _ := tlsServer(t, 5*time.Second, Limits{})
	c, err := DialTLS(context.Background(), msoap.Protocol, addr, 5*time.Second, &tls.Config{RootCAs: ca.Pool()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if st := c.TLSState(); st == nil || st.Version != tls.VersionTLS13 {
		t.Fatalf("TLS state %+v", st)
	}
	if _, err := Expect[msoap.AuthenticateOK](c, &msoap.Authenticate{Account: "a", Password: "pw"}); err != nil {
		t.Fatal(err)
	}
	// A client that does not trust the CA is refused by its own check.
	if _, err := DialTLS(context.Background(), msoap.Protocol, addr, 5*time.Second, nil); err == nil {
		t.Fatal("an unknown CA was accepted")
	}
}

// TestTLSHandshakeBounded: a client that connects and never sends its
// hello is dropped after the time to authenticate (here shorter than the
// idle timeout), as a client that never sends a command would be.
func TestTLSHandshakeBounded(t *testing.T) {
	const auth = 600 * time.Millisecond
	addr, _, logs := tlsServer(t, 10*time.Second, Limits{AuthTime: auth})
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = conn.Read(make([]byte, 1))
	took := time.Since(start)
	if err == nil || errors.Is(err, os.ErrDeadlineExceeded) || took > 5*auth/2 {
		t.Fatalf("stalled handshake: %v after %v, want the server to close within %v", err, took, 5*auth/2)
	}
	deadline := time.Now().Add(2 * time.Second)
	for !strings.Contains(logs(), "TLS handshake failed") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(logs(), "TLS handshake failed") {
		t.Fatalf("log: %q", logs())
	}
}

func TestPasswordOKSession(t *testing.T) {
	s := &Session{Remote: netip.MustParseAddrPort("192.0.2.1:1")}
	if s.PasswordOK() {
		t.Fatal("cleartext from 192.0.2.1 allowed")
	}
	s.TLS = &tls.ConnectionState{}
	if !s.PasswordOK() {
		t.Fatal("TLS from 192.0.2.1 refused")
	}
	s = &Session{Remote: netip.MustParseAddrPort("192.0.2.1:1"), clearAuth: true}
	if !s.PasswordOK() {
		t.Fatal("cleartextauth ignored")
	}
}
