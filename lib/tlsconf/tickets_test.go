package tlsconf

import (
	"crypto/tls"
	"net"
	"path/filepath"
	"testing"
	"time"

	"im2000/lib/tlsconf/tlstest"
)

// serveTLS serves each connection of a listener it makes with the Config
// cfg gives for it (nil: the connection is closed): a handshake, then one
// octet, so that the client takes its TLS 1.3 ticket in. It returns the
// address.
func serveTLS(t *testing.T, cfg func() *tls.Config) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			c := cfg()
			if c == nil {
				conn.Close()
				continue
			}
			go func() {
				tc := tls.Server(conn, c)
				defer tc.Close()
				tc.SetDeadline(time.Now().Add(5 * time.Second))
				tc.Handshake()
				tc.Write([]byte("x"))
			}()
		}
	}()
	return l.Addr().String()
}

// serveProcesses serves each TLS connection with a Config of its own from
// the pair's files, as each process under tcpserver does.
func serveProcesses(t *testing.T, certFile, keyFile string) string {
	return serveTLS(t, func() *tls.Config {
		c := &Certs{CertFile: certFile, KeyFile: keyFile}
		if err := c.Reload(true); err != nil {
			return nil
		}
		return c.Config()
	})
}

// TestTicketsAcrossProcesses: a session made with one process resumes with
// another serving the same pair (tcpserver's one process per connection,
// or a restarted listener), the next day too, but not two days later, and
// never with a server of another key.
func TestTicketsAcrossProcesses(t *testing.T) {
	ca := tlstest.NewCA(t)
	dir := t.TempDir()
	crt, key := filepath.Join(dir, "crt"), filepath.Join(dir, "key")
	ca.WriteLeaf(t, crt, key, 1, "example.org")
	crt2, key2 := filepath.Join(dir, "crt2"), filepath.Join(dir, "key2")
	ca.WriteLeaf(t, crt2, key2, 2, "example.org")
	addr, other := serveProcesses(t, crt, key), serveProcesses(t, crt2, key2)

	day0 := time.Date(2026, 12, 2, 23, 59, 0, 0, time.UTC)
	setClock := func(t time.Time) { testClock.Store(t.UnixNano()) }
	setClock(day0)
	t.Cleanup(func() { testClock.Store(0) })

	var cache tls.ClientSessionCache
	var maxVersion uint16
	dial := func(addr string) tls.ConnectionState {
		t.Helper()
		cfg := &tls.Config{RootCAs: ca.Pool(), ServerName: "example.org", ClientSessionCache: cache, MaxVersion: maxVersion}
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.Read(make([]byte, 1))
		return conn.ConnectionState()
	}
	fresh := func() { cache = tls.NewLRUClientSessionCache(4) }

	fresh()
	if dial(addr).DidResume {
		t.Fatal("the first connection resumed")
	}
	if !dial(addr).DidResume {
		t.Fatal("a second process serving the same pair did not resume the first's session")
	}
	if dial(other).DidResume {
		t.Fatal("a server with another key took the session")
	}

	fresh()
	dial(addr)
	setClock(day0.Add(2 * time.Minute)) // the next day
	if !dial(addr).DidResume {
		t.Fatal("yesterday's ticket was not taken")
	}
	fresh()
	setClock(day0)
	dial(addr)
	setClock(day0.Add(24*time.Hour + 2*time.Minute)) // two days on
	if dial(addr).DidResume {
		t.Fatal("a ticket two days old was taken")
	}

	// TLS 1.2: a ticket holds the master secret, so it is never under keys
	// derived from the private key: another process does not take it.
	fresh()
	setClock(day0)
	maxVersion = tls.VersionTLS12
	if st := dial(addr); st.Version != tls.VersionTLS12 || st.DidResume {
		t.Fatalf("TLS 1.2 client: version %x, resumed %v", st.Version, st.DidResume)
	}
	if dial(addr).DidResume {
		t.Fatal("a TLS 1.2 ticket was taken by another process")
	}
}

// TestTLS12ResumesInProcess: a TLS 1.2 client still resumes with the
// process that issued its ticket (crypto/tls's random keys).
func TestTLS12ResumesInProcess(t *testing.T) {
	ca := tlstest.NewCA(t)
	dir := t.TempDir()
	c := &Certs{CertFile: filepath.Join(dir, "crt"), KeyFile: filepath.Join(dir, "key")}
	ca.WriteLeaf(t, c.CertFile, c.KeyFile, 1, "example.org")
	if err := c.Reload(true); err != nil {
		t.Fatal(err)
	}
	srv := c.Config()
	addr := serveTLS(t, func() *tls.Config { return srv })
	cache := tls.NewLRUClientSessionCache(4)
	for i := range 2 {
		cfg := &tls.Config{RootCAs: ca.Pool(), ServerName: "example.org", ClientSessionCache: cache, MaxVersion: tls.VersionTLS12}
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
		if err != nil {
			t.Fatal(err)
		}
		conn.Read(make([]byte, 1))
		st := conn.ConnectionState()
		conn.Close()
		if st.Version != tls.VersionTLS12 || st.DidResume != (i == 1) {
			t.Fatalf("connection %d: version %x, resumed %v", i, st.Version, st.DidResume)
		}
	}
}

// TestTicketKeys: the keys depend on the key pair and the day, today's
// first and yesterday's second.
func TestTicketKeys(t *testing.T) {
	ca := tlstest.NewCA(t)
	load := func(serial int64) *tls.Certificate {
		c, k := ca.Leaf(t, serial, "example.org")
		pair, err := tls.X509KeyPair(c, k)
		if err != nil {
			t.Fatal(err)
		}
		return &pair
	}
	a, b := load(1), load(2)
	k1, ok1 := ticketKeys(a, 100)
	k2, ok2 := ticketKeys(a, 101)
	k3, ok3 := ticketKeys(b, 100)
	if !ok1 || !ok2 || !ok3 || len(k1) != 2 {
		t.Fatal("no keys")
	}
	if k2[1] != k1[0] || k1[0] == k1[1] || k2[0] == k1[0] {
		t.Fatal("the days' keys do not rotate as they should")
	}
	if k3[0] == k1[0] || k3[1] == k1[1] {
		t.Fatal("another key pair gives the same ticket keys")
	}
}

// TestTicketsAfterRenewal: the first session after a renewal to a new key
// gets a ticket under the new key's keys, so that its next connection
// resumes (rotate checks the files before GetCertificate would).
func TestTicketsAfterRenewal(t *testing.T) {
	ca := tlstest.NewCA(t)
	dir := t.TempDir()
	crt, key := filepath.Join(dir, "crt"), filepath.Join(dir, "key")
	ca.WriteLeaf(t, crt, key, 1, "example.org")
	addr := serveProcesses(t, crt, key)
	c := &Certs{CertFile: crt, KeyFile: key}
	if err := c.Reload(true); err != nil {
		t.Fatal(err)
	}
	srv := c.Config()
	listener := serveTLS(t, func() *tls.Config { return srv })
	var cache tls.ClientSessionCache
	dial := func(addr string) tls.ConnectionState {
		t.Helper()
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr,
			&tls.Config{RootCAs: ca.Pool(), ServerName: "example.org", ClientSessionCache: cache})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.Read(make([]byte, 1))
		return conn.ConnectionState()
	}
	cache = tls.NewLRUClientSessionCache(4)
	dial(listener)
	ca.WriteLeaf(t, crt, key, 2, "example.org") // a renewal with a new key
	cache = tls.NewLRUClientSessionCache(4)     // a client new to the server
	if st := dial(listener); st.DidResume || st.PeerCertificates[0].SerialNumber.Int64() != 2 {
		t.Fatalf("after the renewal: resumed %v, serial %v", st.DidResume, st.PeerCertificates[0].SerialNumber)
	}
	if !dial(listener).DidResume {
		t.Fatal("the session made just after the renewal did not resume: its ticket was under the old key's keys")
	}
	if !dial(addr).DidResume {
		t.Fatal("another process serving the renewed pair did not take the ticket")
	}
}
