package main

import (
	"bufio"
	"crypto/tls"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"im2000/lib/tlsconf"
	"im2000/lib/tlsconf/tlstest"
)

// tlsSession serves one session with STLS offered to a client whose
// address is said to be peer, and returns the client's end.
func tlsSession(t *testing.T, peer string) (net.Conn, *tlstest.CA) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t)
	ca.WriteLeaf(t, filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem"), 1, "pop.example")
	certs := &tlsconf.Certs{CertFile: filepath.Join(dir, "c.pem"), KeyFile: filepath.Join(dir, "k.pem")}
	if err := certs.Reload(true); err != nil {
		t.Fatal(err)
	}
	c := &config{state: t.TempDir(), timeout: 5 * time.Second, tls: certs.Config()}
	c.check = func(string, string) error { t.Error("a password was checked"); return nil }
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		conn, err := l.Accept()
		if err == nil {
			c.serve(conn, peer)
		}
	}()
	conn, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	t.Cleanup(func() { conn.Close() })
	return conn, ca
}

func readUntil(t *testing.T, r *bufio.Reader, end string) string {
	t.Helper()
	var b strings.Builder
	for {
		line, err := r.ReadString('\n')
		b.WriteString(line)
		if err != nil || strings.TrimRight(line, "\r\n") == end || (end == "" && line != "") {
			if err != nil {
				b.WriteString("<" + err.Error() + ">")
			}
			return b.String()
		}
	}
}

// TestSTLS: from a remote address, CAPA offers STLS and not USER, USER is
// refused; after STLS, over TLS, CAPA lists USER and not STLS.
func TestSTLS(t *testing.T) {
	conn, ca := tlsSession(t, "192.0.2.1:1100")
	r := bufio.NewReader(conn)
	readUntil(t, r, "")
	conn.Write([]byte("CAPA\r\n"))
	if capa := readUntil(t, r, "."); !strings.Contains(capa, "STLS") || strings.Contains(capa, "USER") {
		t.Fatalf("CAPA before TLS: %q", capa)
	}
	conn.Write([]byte("USER bob\r\n"))
	if l := readUntil(t, r, ""); !strings.HasPrefix(l, "-ERR [AUTH]") {
		t.Fatalf("USER before TLS: %q", l)
	}
	conn.Write([]byte("STLS\r\n"))
	if l := readUntil(t, r, ""); !strings.HasPrefix(l, "+OK") {
		t.Fatalf("STLS: %q", l)
	}
	tc := tls.Client(conn, &tls.Config{RootCAs: ca.Pool(), ServerName: "pop.example"})
	r = bufio.NewReader(tc)
	tc.Write([]byte("CAPA\r\n"))
	if capa := readUntil(t, r, "."); strings.Contains(capa, "STLS") || !strings.Contains(capa, "USER") {
		t.Fatalf("CAPA after TLS: %q", capa)
	}
	tc.Write([]byte("STLS\r\n"))
	if l := readUntil(t, r, ""); !strings.HasPrefix(l, "-ERR") {
		t.Fatalf("STLS again: %q", l)
	}
}

// TestSTLSInjection: commands sent with STLS, before the handshake, are
// cleartext anyone on the path could have added: the session ends.
func TestSTLSInjection(t *testing.T) {
	conn, _ := tlsSession(t, "192.0.2.1:1100")
	r := bufio.NewReader(conn)
	readUntil(t, r, "")
	conn.Write([]byte("STLS\r\nUSER bob\r\nPASS pw\r\n"))
	if l := readUntil(t, r, ""); !strings.HasPrefix(l, "-ERR nothing may follow STLS") {
		t.Fatalf("STLS with commands after it: %q", l)
	}
	if rest := readUntil(t, r, ""); !strings.Contains(rest, "EOF") {
		t.Fatalf("the session went on: %q", rest)
	}
}
