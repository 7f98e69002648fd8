package locate

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"

	"im2000/lib/tlsconf"
	"im2000/lib/tlsconf/tlstest"
)

// serveEcho serves cfg on a loopback port: one configuration for every
// connection, as one listening process has. Each connection echoes one
// line of up to 64 octets, then closes. A nil cfg: cleartext.
func serveEcho(t testing.TB, cfg *tls.Config) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				if cfg != nil {
					c = tls.Server(c, cfg)
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				b := make([]byte, 64)
				n, _ := c.Read(b)
				c.Write(b[:n])
			}()
		}
	}()
	return l.Addr().String()
}

// serverConfig is the configuration tlsconf gives a server (-tls) with a
// certificate for names from ca.
func serverConfig(t testing.TB, ca *tlstest.CA, names ...string) *tls.Config {
	t.Helper()
	dir := t.TempDir()
	certs := &tlsconf.Certs{CertFile: filepath.Join(dir, "crt"), KeyFile: filepath.Join(dir, "key")}
	ca.WriteLeaf(t, certs.CertFile, certs.KeyFile, 1, names...)
	if err := certs.Reload(true); err != nil {
		t.Fatal(err)
	}
	return certs.Config()
}

// oneCommand dials rnasp at domain through Locator.Dial, sends one line
// and reads its echo (as a one-command session does: the TLS 1.3 ticket
// arrives after the handshake and is taken in by that read), and returns
// the TLS state (nil: cleartext).
func oneCommand(t testing.TB, l *Locator, domain string) *tls.ConnectionState {
	t.Helper()
	c, err := l.Dial(context.Background(), "rnasp", domain)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		t.Fatal(err)
	}
	if b, err := io.ReadAll(io.LimitReader(c, 64)); err != nil || string(b) != "ping\n" {
		t.Fatalf("echo %q, %v", b, err)
	}
	tc, ok := c.(*tls.Conn)
	if !ok {
		return nil
	}
	st := tc.ConnectionState()
	return &st
}

// resumed says whether st is a TLS session that resumed.
func resumed(st *tls.ConnectionState) bool { return st != nil && st.DidResume }

// TestDialResumes: a second dial of a domain through the real client path
// (Locator.Dial, the tlsconf.Client's configuration) resumes the first
// session, against the real server configuration (tlsconf.Certs.Config);
// so does a dial from another Locator sharing the process's Client, as
// each delivery makes one. A full handshake offers the post-quantum hybrid,
// a resumed one only X25519. Another domain served by the same server does
// not take the first domain's session.
func TestDialResumes(t *testing.T) {
	ca := tlstest.NewCA(t)
	addr := serveEcho(t, serverConfig(t, ca, "good.test", "other.test"))
	client := tlsconf.NewClient(ca.Pool(), nil, &tlsconf.Tracker{Dir: t.TempDir()})
	routes := map[string][]string{"_rnasps._tcp.good.test": {addr}, "_rnasps._tcp.other.test": {addr}}
	locator := func() *Locator { return &Locator{Routes: routes, Timeout: 5 * time.Second, TLS: client} }
	l := locator()
	if st := oneCommand(t, l, "good.test"); st == nil || st.DidResume || st.CurveID != tls.X25519MLKEM768 {
		t.Fatalf("the first session: %+v; want a full handshake with X25519MLKEM768", st)
	}
	for i := range 3 {
		if st := oneCommand(t, l, "good.test"); !resumed(st) || st.CurveID != tls.X25519 {
			t.Fatalf("dial %d of good.test: %+v; want it resumed, with X25519", i+2, st)
		}
	}
	if !resumed(oneCommand(t, locator(), "good.test")) {
		t.Fatal("a dial from another Locator with the same Client did not resume")
	}
	if resumed(oneCommand(t, l, "other.test")) {
		t.Fatal("other.test resumed good.test's session")
	}
}

// TestDialResumeDeclined: a server that declines the cached session (its
// ticket keys changed, as on a restart) gets a full handshake with the
// hybrid, not the classical-only one offered for resumption; the next dial
// resumes the new session. A session is offered only to the server that
// issued it.
func TestDialResumeDeclined(t *testing.T) {
	ca := tlstest.NewCA(t)
	cfg := serverConfig(t, ca, "good.test")
	addr, addr2 := serveEcho(t, cfg), serveEcho(t, serverConfig(t, ca, "good.test"))
	l := &Locator{Routes: map[string][]string{"_rnasps._tcp.good.test": {addr}}, Timeout: 5 * time.Second,
		TLS: tlsconf.NewClient(ca.Pool(), nil, nil)}
	oneCommand(t, l, "good.test")
	cfg.SetSessionTicketKeys([][32]byte{{1}})
	if st := oneCommand(t, l, "good.test"); st == nil || st.DidResume || st.CurveID != tls.X25519MLKEM768 {
		t.Fatalf("after the server's ticket keys changed: %+v; want a full handshake with X25519MLKEM768", st)
	}
	if st := oneCommand(t, l, "good.test"); !resumed(st) {
		t.Fatalf("the session made after the server's keys changed: %+v; want it resumed", st)
	}
	// Another server of the domain: its own full handshake, with the hybrid.
	l.Routes["_rnasps._tcp.good.test"] = []string{addr2}
	if st := oneCommand(t, l, "good.test"); st == nil || st.DidResume || st.CurveID != tls.X25519MLKEM768 {
		t.Fatalf("another server of the domain: %+v; want a full handshake with X25519MLKEM768", st)
	}
	// Its session did not replace the first server's.
	l.Routes["_rnasps._tcp.good.test"] = []string{addr}
	if st := oneCommand(t, l, "good.test"); !resumed(st) {
		t.Fatalf("back to the first server: %+v; want its session resumed", st)
	}
}

// BenchmarkDialOneCommand: one-command sessions through Locator.Dial, in
// cleartext, over TLS with a full handshake each (a new Client, an empty
// cache), and resumed.
func BenchmarkDialOneCommand(b *testing.B) {
	ca := tlstest.NewCA(b)
	addr := serveEcho(b, serverConfig(b, ca, "good.test"))
	routes := map[string][]string{"_rnasps._tcp.good.test": {addr}, "_rnasp._tcp.clear.test": {serveEcho(b, nil)}}
	b.Run("cleartext", func(b *testing.B) {
		for range b.N {
			oneCommand(b, &Locator{Routes: routes}, "clear.test")
		}
	})
	b.Run("full", func(b *testing.B) {
		for range b.N {
			oneCommand(b, &Locator{Routes: routes, TLS: tlsconf.NewClient(ca.Pool(), nil, nil)}, "good.test")
		}
	})
	b.Run("resumed", func(b *testing.B) {
		l := &Locator{Routes: routes, TLS: tlsconf.NewClient(ca.Pool(), nil, nil)}
		oneCommand(b, l, "good.test")
		b.ResetTimer()
		for range b.N {
			if !resumed(oneCommand(b, l, "good.test")) {
				b.Fatal("not resumed")
			}
		}
	})
}
