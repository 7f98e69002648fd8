package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"im2000/lib/conf"
	"im2000/lib/tlsconf/tlstest"
)

type logBuf struct {
	mu    sync.Mutex
	lines []string
}

func (l *logBuf) logf(format string, a ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(format, a...))
}

func (l *logBuf) count(sub string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, s := range l.lines {
		if strings.Contains(s, sub) {
			n++
		}
	}
	return n
}

func setting(t *testing.T, d conf.Dir, name, value string) {
	if err := os.WriteFile(d.Path(name), []byte(value+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

func serial(c *Certs) int64 { return c.Certificate().Leaf.SerialNumber.Int64() }

func TestLoadSettings(t *testing.T) {
	d := conf.Dir(t.TempDir())
	if _, err := Load(d, nil); !errors.Is(err, ErrNoCert) {
		t.Fatalf("no settings: %v, want ErrNoCert", err)
	}
	setting(t, d, SettingCert, "cert.pem")
	if _, err := Load(d, nil); err == nil || errors.Is(err, ErrNoCert) {
		t.Fatalf("tlscert without tlskey: %v, want an error", err)
	}
	setting(t, d, SettingKey, "key.pem")
	if _, err := Load(d, nil); err == nil {
		t.Fatal("missing files loaded")
	}
	ca := tlstest.NewCA(t)
	ca.WriteLeaf(t, d.Path("cert.pem"), d.Path("key.pem"), 7, "example.org")
	c, err := Load(d, nil) // relative paths: from the configuration directory
	if err != nil {
		t.Fatal(err)
	}
	if serial(c) != 7 {
		t.Fatalf("serial %d", serial(c))
	}
	cfg := c.Config()
	if cfg.MinVersion != tls.VersionTLS12 {
		t.Fatalf("MinVersion %x", cfg.MinVersion)
	}
}

// TestReload: a pair replaced on disk is served at the next handshake; a
// bad new pair leaves the old one, logged once, until the files change.
func TestReload(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t)
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	ca.WriteLeaf(t, cert, key, 1, "example.org")
	var log logBuf
	c := &Certs{CertFile: cert, KeyFile: key, Log: log.logf}
	if err := c.Reload(true); err != nil {
		t.Fatal(err)
	}
	ca.WriteLeaf(t, cert, key, 2, "example.org")
	if s := serial(c); s != 2 {
		t.Fatalf("after renewal: serial %d, want 2", s)
	}
	// A renewal half done: the new certificate with the old key.
	c2, _ := ca.Leaf(t, 3, "example.org")
	if err := os.WriteFile(cert, c2, 0o600); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if s := serial(c); s != 2 {
			t.Fatalf("bad pair: serial %d, want the old 2", s)
		}
	}
	if n := log.count("keeping the certificate in use"); n != 1 {
		t.Fatalf("bad pair logged %d times, want once: %q", n, log.lines)
	}
	ca.WriteLeaf(t, cert, key, 4, "example.org")
	if s := serial(c); s != 4 {
		t.Fatalf("fixed: serial %d, want 4", s)
	}
	os.Remove(cert)
	if s := serial(c); s != 4 {
		t.Fatalf("removed: serial %d, want the old 4", s)
	}
}

// TestReloadSymlinks: certbot's layout, live/NAME/*.pem links into
// archive/NAME/*N.pem, moved to the next N on renewal.
func TestReloadSymlinks(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t)
	archive, live := filepath.Join(dir, "archive"), filepath.Join(dir, "live")
	os.Mkdir(archive, 0o700)
	os.Mkdir(live, 0o700)
	link := func(n int) {
		for _, f := range []string{"fullchain", "privkey"} {
			tmp := filepath.Join(live, f+".tmp")
			if err := os.Symlink(fmt.Sprintf("../archive/%s%d.pem", f, n), tmp); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(tmp, filepath.Join(live, f+".pem")); err != nil {
				t.Fatal(err)
			}
		}
	}
	ca.WriteLeaf(t, filepath.Join(archive, "fullchain1.pem"), filepath.Join(archive, "privkey1.pem"), 11, "example.org")
	link(1)
	d := conf.Dir(dir)
	setting(t, d, SettingCert, filepath.Join(live, "fullchain.pem"))
	setting(t, d, SettingKey, filepath.Join(live, "privkey.pem"))
	c, err := Load(d, nil)
	if err != nil {
		t.Fatal(err)
	}
	ca.WriteLeaf(t, filepath.Join(archive, "fullchain2.pem"), filepath.Join(archive, "privkey2.pem"), 12, "example.org")
	link(2)
	if s := serial(c); s != 12 {
		t.Fatalf("serial %d, want 12", s)
	}
}

// TestHandshake: TLS 1.3 by default, 1.2 accepted, 1.1 refused, and a
// second connection to the same Config resumes the first's session.
func TestHandshake(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t)
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	ca.WriteLeaf(t, cert, key, 1, "example.org")
	c := &Certs{CertFile: cert, KeyFile: key}
	if err := c.Reload(true); err != nil {
		t.Fatal(err)
	}
	srv := c.Config()
	addr := serveTLS(t, func() *tls.Config { return srv })
	cache := tls.NewLRUClientSessionCache(4)
	dial := func(minV, maxV uint16) (tls.ConnectionState, error) {
		cfg := &tls.Config{RootCAs: ca.Pool(), ServerName: "example.org", MinVersion: minV, MaxVersion: maxV, ClientSessionCache: cache}
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
		if err != nil {
			return tls.ConnectionState{}, err
		}
		defer conn.Close()
		conn.Read(make([]byte, 1))
		return conn.ConnectionState(), nil
	}
	st, err := dial(0, 0)
	if err != nil || st.Version != tls.VersionTLS13 {
		t.Fatalf("default: version %x, %v; want TLS 1.3", st.Version, err)
	}
	if st, err = dial(0, 0); err != nil || !st.DidResume {
		t.Fatalf("second connection: resumed %v, %v", st.DidResume, err)
	}
	if st, err = dial(tls.VersionTLS12, tls.VersionTLS12); err != nil || st.Version != tls.VersionTLS12 {
		t.Fatalf("TLS 1.2: %x, %v", st.Version, err)
	}
	if _, err = dial(tls.VersionTLS10, tls.VersionTLS11); err == nil {
		t.Fatal("TLS 1.1 accepted")
	}
}

func TestPasswordOK(t *testing.T) {
	for _, c := range []struct {
		tls   bool
		peer  string
		local bool
		clear bool
		want  bool
	}{
		{false, "127.0.0.1", false, false, true},
		{false, "127.0.0.2", false, false, true},
		{false, "::1", false, false, true},
		{false, "::ffff:127.0.0.1", false, false, true},
		{false, "192.0.2.1", false, false, false},
		{false, "2001:db8::1", false, false, false},
		{true, "192.0.2.1", false, false, true},
		{false, "192.0.2.1", false, true, true},
		{false, "", true, false, true},   // pipes: a local user
		{false, "", false, false, false}, // a socket with no IP address (Unix-domain): remote
		{true, "", false, false, true},
		{false, "", false, true, true},
	} {
		a, _ := netip.ParseAddr(c.peer)
		if got := PasswordOK(c.tls, a, c.local, c.clear); got != c.want {
			t.Errorf("PasswordOK(%v, %q, %v, %v) = %v", c.tls, c.peer, c.local, c.clear, got)
		}
	}
}

func TestClearAuth(t *testing.T) {
	d := conf.Dir(t.TempDir())
	if ok, err := ClearAuth(d); ok || err != nil {
		t.Fatalf("default: %v %v", ok, err)
	}
	setting(t, d, SettingCleartextAuth, "1")
	if ok, err := ClearAuth(d); !ok || err != nil {
		t.Fatalf("1: %v %v", ok, err)
	}
	setting(t, d, SettingCleartextAuth, "2")
	if _, err := ClearAuth(d); err == nil {
		t.Fatal("2 accepted")
	}
}

// TestReloadSameTick: a pair rewritten in place, at the same size, within
// one tick of the kernel's coarse file clock keeps every stat field; the
// reload still sees it (contents compared while the stamp is racy).
func TestReloadSameTick(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t)
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	// Two leaves whose files have the same sizes, so that only the
	// contents differ.
	var a, b [2][]byte
	for serial := int64(10); ; serial++ {
		if serial > 200 {
			t.Fatal("no two leaves of the same size")
		}
		c, k := ca.Leaf(t, serial, "example.org")
		if a[0] == nil {
			a = [2][]byte{c, k}
			continue
		}
		if len(c) == len(a[0]) && len(k) == len(a[1]) {
			b = [2][]byte{c, k}
			break
		}
	}
	want := leafSerial(t, b[0])
	// The kernel here may keep fine file times; play a coarse clock: every
	// stat of a file answers what it answered first, as a rewrite within
	// one tick would.
	real := statFile
	defer func() { statFile = real }()
	frozen := map[string]fileStamp{}
	statFile = func(path string) (fileStamp, error) {
		if s, ok := frozen[path]; ok {
			return s, nil
		}
		s, err := real(path)
		frozen[path] = s
		return s, err
	}
	for round := range 20 {
		clear(frozen)
		for _, f := range []struct {
			path string
			data []byte
		}{{cert, a[0]}, {key, a[1]}} {
			if err := os.WriteFile(f.path, f.data, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		c := &Certs{CertFile: cert, KeyFile: key}
		if err := c.Reload(true); err != nil {
			t.Fatal(err)
		}
		// In place (same inode), at once (same tick, most rounds).
		for _, f := range []struct {
			path string
			data []byte
		}{{cert, b[0]}, {key, b[1]}} {
			if err := os.WriteFile(f.path, f.data, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		if s := serial(c); s != want {
			t.Fatalf("round %d: serial %d after an in-place rewrite, want %d", round, s, want)
		}
	}
}

func leafSerial(t *testing.T, certPEM []byte) int64 {
	t.Helper()
	block, _ := pem.Decode(certPEM)
	if block == nil {
		t.Fatal("no PEM block")
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return leaf.SerialNumber.Int64()
}

// TestReloadOnSIGHUPOnce: a program that makes a new pair on each SIGHUP
// (imapd) and asks each to be read on SIGHUP gets one reading a SIGHUP,
// of the newest pair, not one more for every SIGHUP before.
func TestReloadOnSIGHUPOnce(t *testing.T) {
	ca := tlstest.NewCA(t)
	dir := t.TempDir()
	var mu sync.Mutex
	var lines []string
	log := func(format string, a ...any) {
		mu.Lock()
		defer mu.Unlock()
		lines = append(lines, fmt.Sprintf(format, a...))
	}
	var last *Certs
	for i := range 3 {
		c := &Certs{CertFile: filepath.Join(dir, fmt.Sprintf("crt%d", i)), KeyFile: filepath.Join(dir, fmt.Sprintf("key%d", i)), Log: log}
		ca.WriteLeaf(t, c.CertFile, c.KeyFile, int64(i+1), "example.org")
		if err := c.Reload(true); err != nil {
			t.Fatal(err)
		}
		c.ReloadOnSIGHUP()
		last = c
	}
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := len(lines)
		mu.Unlock()
		if n > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // room for any second reading
	mu.Lock()
	defer mu.Unlock()
	if len(lines) != 1 || !strings.Contains(lines[0], last.CertFile) {
		t.Fatalf("one SIGHUP after three pairs asked to be read: %q", lines)
	}
}
