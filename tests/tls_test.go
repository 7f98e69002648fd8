package tests

import (
	"crypto/tls"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"im2000/lib/msgid"
	"im2000/lib/session"
	"im2000/lib/tlsconf/tlstest"
	"im2000/lib/wire"
	"im2000/lib/wire/msoap"
	"im2000/lib/wire/msrap"
	"im2000/lib/wire/rnaqp"
	"im2000/lib/wire/rnasp"
)

// withTLS gives e a certificate and key (tlscert, tlskey) for 127.0.0.1,
// localhost and the names given, signed by a private CA made for the test,
// whose certificate it writes to testca.pem (for clients).
func withTLS(t *testing.T, e *env, names ...string) *tlstest.CA {
	t.Helper()
	ca := tlstest.NewCA(t)
	ca.WriteLeaf(t, filepath.Join(e.conf, "tls.crt"), filepath.Join(e.conf, "tls.key"), 1, append([]string{"127.0.0.1", "localhost"}, names...)...)
	e.setConf("tlscert", "tls.crt")
	e.setConf("tlskey", "tls.key")
	if err := os.WriteFile(filepath.Join(e.conf, "testca.pem"), ca.PEM, 0o644); err != nil {
		t.Fatal(err)
	}
	return ca
}

// derServer is one of the four DER servers and a command that proves a
// session with it works.
type derServer struct {
	prog string
	p    *wire.Protocol
	use  func(t *testing.T, c *session.Client)
}

var derServers = []derServer{
	{"im2000-submitd", msoap.Protocol, func(t *testing.T, c *session.Client) {
		call(t, c, &msoap.Authenticate{Account: "alice", Password: "alicepw"}, msoap.NoError, false)
		call(t, c, &msoap.Track{ID: msgid.New()}, msoap.ErrorNoSuchMessage, false)
	}},
	{"im2000-retrieved", msrap.Protocol, func(t *testing.T, c *session.Client) {
		call(t, c, &msrap.QuerySize{ID: msgid.New()}, msrap.ErrorNoSuchMessage, false)
	}},
	{"im2000-agentd", rnasp.Protocol, func(t *testing.T, c *session.Client) {
		call(t, c, notify("bob"), rnasp.NoError, false)
	}},
	{"im2000-queryd", rnaqp.Protocol, func(t *testing.T, c *session.Client) {
		call(t, c, &rnaqp.Authenticate{Account: "bob", Password: "bobpw"}, rnaqp.NoError, false)
		call(t, c, rnaqp.RetrieveAndClear{}, rnaqp.NoError, false)
	}},
}

// TestTLSDER: the four DER servers with -tls, listening themselves and
// under tcpserver, serve sessions over TLS 1.3 to the project's client,
// verified against the private CA; a cleartext client on the TLS port
// gets no answer. A second connection resumes the first's TLS session,
// in both modes: under tcpserver each connection is a process of its own,
// and takes the others' tickets because the ticket keys come from the
// served key (lib/tlsconf/tickets.go).
func TestTLSDER(t *testing.T) {
	for _, mode := range []string{"listener", "tcpserver"} {
		for _, srv := range derServers {
			t.Run(srv.prog+"/"+mode, func(t *testing.T) {
				t.Parallel()
				e := limitsEnv(t)
				ca := withTLS(t, e)
				addr, logs := serve(t, e, mode, srv.prog, "-tls")
				defer func() {
					if t.Failed() {
						t.Logf("server log:\n%s", logs.String())
					}
				}()
				cache := tls.NewLRUClientSessionCache(4)
				cfg := &tls.Config{RootCAs: ca.Pool(), ClientSessionCache: cache}
				for i := range 2 {
					c, err := session.DialTLS(t.Context(), srv.p, addr, 10*time.Second, cfg)
					if err != nil {
						t.Fatalf("TLS session %d: %v", i, err)
					}
					srv.use(t, c)
					st := c.TLSState()
					c.Close()
					if st == nil || st.Version != tls.VersionTLS13 {
						t.Fatalf("session %d: TLS state %+v, want TLS 1.3", i, st)
					}
					if want := i == 1; st.DidResume != want {
						t.Errorf("session %d (%s): resumed %v, want %v", i, mode, st.DidResume, want)
					}
				}
				// Not trusting the CA: refused by the client's own check.
				if c, err := session.DialTLS(t.Context(), srv.p, addr, 10*time.Second, nil); err == nil {
					c.Close()
					t.Fatal("a certificate of an unknown CA was accepted")
				}
				// A cleartext client on the TLS port gets no answer.
				c := dialProto(t, srv.p, addr)
				c.Timeout = 3 * time.Second
				if pdu, err := c.Call(&msoap.Track{ID: msgid.New()}); err == nil || pdu != nil {
					t.Fatalf("a cleartext command on the TLS port was answered: %v %v", pdu, err)
				}
				c.Close()
				await(t, 5*time.Second, "the failed handshake logged", func() bool {
					return strings.Contains(logs.String(), "TLS handshake failed")
				})
			})
		}
	}
}

// TestTLSPyasn1: the pyasn1 conformance client (tests/interop) over
// Python's ssl module, verifying the certificate, against im2000-submitd
// and im2000-retrieved with -tls, listening and under tcpserver.
func TestTLSPyasn1(t *testing.T) {
	for _, mode := range []string{"listener", "tcpserver"} {
		t.Run(mode, func(t *testing.T) {
			var ca string
			h := newStoreHost(t, mode, func(e *env) { withTLS(t, e); ca = filepath.Join(e.conf, "testca.pem") }, "-tls")
			out, err := exec.Command("/usr/bin/python3", "interop/tls_conformance.py", ca, h.msoap, h.msrap, h.store).CombinedOutput()
			if err != nil || strings.TrimSpace(string(out)) != "ok" {
				t.Fatalf("tls_conformance.py: %v\n%s", err, out)
			}
		})
	}
}

// TestTLSCertReplaced: a certificate renewed on disk is served at the next
// handshake without a restart; a half-written renewal (a new certificate
// with the old key) keeps the good pair in use, logged; SIGHUP reads the
// pair again too.
func TestTLSCertReplaced(t *testing.T) {
	e := limitsEnv(t)
	ca := withTLS(t, e)
	port := freePort(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	cmd, logs := daemonEnv(t, e.vars, addr, filepath.Join(bin, "im2000-submitd"), "-l", addr, "-tls")
	cert, key := filepath.Join(e.conf, "tls.crt"), filepath.Join(e.conf, "tls.key")
	if s := ca.ServedSerial(t, addr, "127.0.0.1"); s != 1 {
		t.Fatalf("serial %d, want 1", s)
	}
	ca.WriteLeaf(t, cert, key, 2, "127.0.0.1")
	if s := ca.ServedSerial(t, addr, "127.0.0.1"); s != 2 {
		t.Fatalf("after renewal: serial %d, want 2", s)
	}
	half, _ := ca.Leaf(t, 3, "127.0.0.1")
	if err := os.WriteFile(cert, half, 0o600); err != nil {
		t.Fatal(err)
	}
	if s := ca.ServedSerial(t, addr, "127.0.0.1"); s != 2 {
		t.Fatalf("half-written renewal: serial %d, want the old 2", s)
	}
	// The line is written during the handshake; the test reads the
	// server's stderr through a pipe, so it may arrive a moment later.
	await(t, 5*time.Second, "the bad pair logged", func() bool {
		return strings.Contains(logs.String(), "keeping the certificate in use")
	})
	ca.WriteLeaf(t, cert, key, 4, "127.0.0.1")
	cmd.Process.Signal(syscall.SIGHUP)
	await(t, 5*time.Second, "SIGHUP logged", func() bool { return strings.Contains(logs.String(), "SIGHUP: certificate") })
	if s := ca.ServedSerial(t, addr, "127.0.0.1"); s != 4 {
		t.Fatalf("after SIGHUP: serial %d, want 4", s)
	}
	c, err := session.DialTLS(t.Context(), msoap.Protocol, addr, 10*time.Second, &tls.Config{RootCAs: ca.Pool()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	call(t, c, &msoap.Authenticate{Account: "alice", Password: "alicepw"}, msoap.NoError, false)
}

// TestTLSHandshakeStall: a client that connects to a TLS port and never
// sends its hello holds the session no longer than the time to
// authenticate (authtimeout, 2 s here; the idle timeouts are minutes), in
// every kind of server.
func TestTLSHandshakeStall(t *testing.T) {
	for _, s := range []struct{ mode, prog string }{
		{"tcpserver", "im2000-submitd"}, {"listener", "im2000-queryd"},
		{"listener", "im2000-smtpd"}, {"tcpserver", "im2000-smtpd"},
		{"listener", "im2000-pop3d"}, {"tcpserver", "im2000-pop3d"},
		{"listener", "im2000-imapd"}, {"tcpserver", "im2000-imapd"},
	} {
		t.Run(s.prog+"/"+s.mode, func(t *testing.T) {
			t.Parallel()
			// A deployment each: under tcpserver the sessions per address
			// are counted in files of the store, and the parallel
			// subtests' stalled sessions, all from 127.0.0.1, would count
			// against one another (one was refused at once, a reset).
			e := limitsEnv(t)
			withTLS(t, e)
			e.setConf("rna", "127.0.0.1:1")
			e.setConf("pop3state", filepath.Join(t.TempDir(), "pop3"))
			e.setConf("imapstate", filepath.Join(t.TempDir(), "imap"))
			addr, logs := serve(t, e, s.mode, s.prog, "-tls")
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			start := time.Now()
			conn.SetReadDeadline(start.Add(30 * time.Second))
			_, err = io.ReadAll(conn)
			if took := time.Since(start); err != nil || took > 5*testAuthTime/2 {
				t.Fatalf("a stalled handshake held the session %v (%v), want it closed within %v\n%s", took, err, 5*testAuthTime/2, logs.String())
			}
		})
	}
}

// pipePair is the client's end of a server run on two pipes.
type pipePair struct {
	r *os.File
	w *os.File
}

func (p pipePair) Read(b []byte) (int, error)         { return p.r.Read(b) }
func (p pipePair) Write(b []byte) (int, error)        { return p.w.Write(b) }
func (p pipePair) Close() error                       { p.w.Close(); return p.r.Close() }
func (p pipePair) LocalAddr() net.Addr                { return &net.UnixAddr{Name: "pipe"} }
func (p pipePair) RemoteAddr() net.Addr               { return &net.UnixAddr{Name: "pipe"} }
func (p pipePair) SetDeadline(t time.Time) error      { p.r.SetDeadline(t); return p.w.SetDeadline(t) }
func (p pipePair) SetReadDeadline(t time.Time) error  { return p.r.SetReadDeadline(t) }
func (p pipePair) SetWriteDeadline(t time.Time) error { return p.w.SetWriteDeadline(t) }

// TestTLSPipes: a DER server with -tls on stdin/stdout that are two pipes,
// not a socket (a UCSPI server that hands pipes, or a local user), speaks
// TLS over them.
func TestTLSPipes(t *testing.T) {
	e := limitsEnv(t)
	ca := withTLS(t, e)
	inR, inW, _ := os.Pipe()
	outR, outW, _ := os.Pipe()
	cmd := exec.Command(filepath.Join(bin, "im2000-retrieved"), "-tls")
	cmd.Env = e.vars
	cmd.Stdin, cmd.Stdout = inR, outW
	var logs syncBuffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	inR.Close()
	outW.Close()
	tc := tls.Client(pipePair{outR, inW}, &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost"})
	c := session.NewClient(tc, msrap.Protocol, 10*time.Second)
	call(t, c, &msrap.QuerySize{ID: msgid.New()}, msrap.ErrorNoSuchMessage, false)
	if st := tc.ConnectionState(); st.Version != tls.VersionTLS13 {
		t.Errorf("version %x", st.Version)
	}
	c.Close()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("im2000-retrieved: %v\n%s", err, logs.String())
		}
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		t.Fatal("im2000-retrieved did not end with its session")
	}
	checkLog(t, "im2000-retrieved", logs.String())
}
