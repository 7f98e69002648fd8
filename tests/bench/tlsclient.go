package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"im2000/lib/locate"
	"im2000/lib/session"
	"im2000/lib/tlsconf"
	"im2000/lib/wire/msrap"
)

// benchCert writes a private CA's certificate for names and 127.0.0.1 as
// tlscert and tlskey in confDir, and returns a pool with the CA.
func benchCert(confDir string, names ...string) *x509.CertPool {
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "bench CA"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour)}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	must(err)
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, caKey)
	must(err)
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	must(os.WriteFile(filepath.Join(confDir, "tls.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	must(os.WriteFile(filepath.Join(confDir, "tls.key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600))
	must(os.WriteFile(filepath.Join(confDir, "tlscert"), []byte("tls.crt\n"), 0o644))
	must(os.WriteFile(filepath.Join(confDir, "tlskey"), []byte("tls.key\n"), 0o644))
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return pool
}

// benchTLSClient (issue 16): the client dial (lib/locate: TLS form first,
// verified) against im2000-retrieved on one store, in cleartext and with
// -tls, both listening itself (-l) and under tcpserver as conf/setup.sh
// runs it (a process a connection; resumption across processes rests on
// ticket keys derived from the served key, lib/tlsconf/tickets.go): round
// trips on one session, one-command sessions (TLS with a full handshake
// each, and resumed), and the retrieval of a 10 MiB message.
func benchTLSClient() {
	tmp, _ := os.MkdirTemp("", "im2000-bench-tls-")
	defer os.RemoveAll(tmp)
	b, stop := startStore(tmp)
	defer stop()
	confDir := filepath.Join(tmp, "conf")
	pool := benchCert(confDir, "tls.example.org", "tcp-tls.example.org")
	// The store file, as setup.sh names the store: its tcpserver services
	// get IM2000_CONF alone.
	must(os.WriteFile(filepath.Join(confDir, "store"), []byte(filepath.Join(tmp, "store")+"\n"), 0o644))
	tlsAddr := "127.0.0.1:" + freePort()
	bin, _ := filepath.Abs(*binDir)
	retrieved := filepath.Join(bin, "im2000-retrieved")
	stopTLS := serve(tlsAddr, retrieved, "-l", tlsAddr, "-c", "20", "-tls")
	defer stopTLS()
	tcpClear, tcpTLS := "127.0.0.1:"+freePort(), "127.0.0.1:"+freePort()
	stopTC := underTCPServer(tcpClear, confDir, retrieved)
	defer stopTC()
	stopTT := underTCPServer(tcpTLS, confDir, retrieved, "-tls")
	defer stopTT()
	msg10m := sized(10 << 20)
	big, err := b.submitN(1, msg10m)
	must(err)
	rid := b.rid(big[0])

	// clear.example.org and tcp-clear.example.org have no TLS form (and no
	// DNS: the TLS lookup fails at once), as a domain without TLS costs a
	// client.
	routes := map[string][]string{
		"_msraps._tcp.tls.example.org": {tlsAddr}, "_msrap._tcp.clear.example.org": {b.msrap},
		"_msraps._tcp.tcp-tls.example.org": {tcpTLS}, "_msrap._tcp.tcp-clear.example.org": {tcpClear},
	}
	isTLS := map[string]bool{"tls.example.org": true, "tcp-tls.example.org": true}
	shared := tlsconf.NewClient(pool, nil, nil)
	dial := func(c *tlsconf.Client, domain string) (*session.Client, error) {
		l := &locate.Locator{Routes: routes, Timeout: 5 * time.Second, TLS: c}
		s, err := session.Connect(context.Background(), l, msrap.Protocol, domain, time.Minute)
		if err == nil && (s.TLSState() != nil) != isTLS[domain] {
			s.Close()
			return nil, fmt.Errorf("%s: TLS is %v", domain, s.TLSState() != nil)
		}
		return s, err
	}
	query := func(s *session.Client) error {
		_, err := session.Expect[*msrap.QuerySizeOK](s, &msrap.QuerySize{ID: rid})
		return err
	}
	const trips, nsess = 5000, 300
	roundTrips := func(domain string) func() (float64, error) {
		return func() (float64, error) {
			s, err := dial(shared, domain)
			if err != nil {
				return 0, err
			}
			defer s.Close()
			return timed(trips, func() error {
				for range trips {
					if err := query(s); err != nil {
						return err
					}
				}
				return nil
			})
		}
	}
	sessions := func(domain string, fresh bool) func() (float64, error) {
		return func() (float64, error) {
			if !fresh { // one full handshake first, so every timed one resumes
				s, err := dial(shared, domain)
				if err != nil {
					return 0, err
				}
				query(s)
				s.Close()
			}
			var resumed int
			rate, err := timed(nsess, func() error {
				for range nsess {
					c := shared
					if fresh {
						c = tlsconf.NewClient(pool, nil, nil) // an empty session cache
					}
					s, err := dial(c, domain)
					if err != nil {
						return err
					}
					err = query(s)
					if st := s.TLSState(); st != nil && st.DidResume {
						resumed++
					}
					s.Close()
					if err != nil {
						return err
					}
				}
				return nil
			})
			if isTLS[domain] && (resumed == nsess) == fresh {
				return 0, fmt.Errorf("%d of %d sessions resumed, want %s", resumed, nsess, map[bool]string{true: "none", false: "all"}[fresh])
			}
			return rate, err
		}
	}
	retrieval := func(domain string) func() (float64, error) {
		return func() (float64, error) {
			s, err := dial(shared, domain)
			if err != nil {
				return 0, err
			}
			defer s.Close()
			return timed(3*float64(len(msg10m))/1e6, func() error {
				for range 3 {
					if n, err := retrieveWhole(s, rid); err != nil || n != len(msg10m) {
						return fmt.Errorf("retrieved %d octets of %d: %v", n, len(msg10m), err)
					}
				}
				return nil
			})
		}
	}
	// paired alternates blocks of a and b (each doing n operations on its
	// own open session or dial) and returns b's rate over a's: the load of a
	// shared machine moves within a second, and blocks a few milliseconds
	// long see the same load, so the ratio holds where two rows measured a
	// second apart do not.
	paired := func(blocks int, a, b func() error) (float64, error) {
		var ta, tb time.Duration
		for range blocks {
			for _, x := range []struct {
				f func() error
				t *time.Duration
			}{{a, &ta}, {b, &tb}} {
				start := time.Now()
				if err := x.f(); err != nil {
					return 0, err
				}
				*x.t += time.Since(start)
			}
		}
		return ta.Seconds() / tb.Seconds(), nil
	}
	tripsRatio := func(clear, tls string) func() (float64, error) {
		return func() (float64, error) {
			sc, err := dial(shared, clear)
			if err != nil {
				return 0, err
			}
			defer sc.Close()
			st, err := dial(shared, tls)
			if err != nil {
				return 0, err
			}
			defer st.Close()
			block := func(s *session.Client) func() error {
				return func() error {
					for range 100 {
						if err := query(s); err != nil {
							return err
						}
					}
					return nil
				}
			}
			return paired(trips/100, block(sc), block(st))
		}
	}
	resumedRatio := func(clear, tls string) func() (float64, error) {
		return func() (float64, error) {
			block := func(domain string) func() error {
				return func() error {
					for range 10 {
						s, err := dial(shared, domain)
						if err != nil {
							return err
						}
						err = query(s)
						st := s.TLSState()
						s.Close()
						if err != nil {
							return err
						}
						if st != nil && !st.DidResume {
							return fmt.Errorf("%s: a session did not resume", domain)
						}
					}
					return nil
				}
			}
			if err := block(tls)(); err != nil && !strings.Contains(err.Error(), "did not resume") {
				return 0, err // the first dial of a round may be a full handshake
			}
			return paired(nsess/10, block(clear), block(tls))
		}
	}
	var rows []*row
	for _, m := range []struct{ clear, tls, suffix string }{
		{"clear.example.org", "tls.example.org", ""},
		{"tcp-clear.example.org", "tcp-tls.example.org", ", tcpserver"},
	} {
		rows = append(rows,
			&row{name: "MSRAP round trips (QuerySize), one session, cleartext" + m.suffix, unit: "/s", f: roundTrips(m.clear)},
			&row{name: "MSRAP round trips (QuerySize), one session, TLS" + m.suffix, unit: "/s", f: roundTrips(m.tls)},
			&row{name: "one-command sessions, cleartext" + m.suffix, unit: "/s", f: sessions(m.clear, true)},
			&row{name: "one-command sessions, TLS, full handshake each" + m.suffix, unit: "/s", f: sessions(m.tls, true)},
			&row{name: "one-command sessions, TLS, resumed" + m.suffix, unit: "/s", f: sessions(m.tls, false)},
			&row{name: "MSRAP retrieval of a 10 MiB message, cleartext" + m.suffix, unit: "MB/s", f: retrieval(m.clear)},
			&row{name: "MSRAP retrieval of a 10 MiB message, TLS" + m.suffix, unit: "MB/s", f: retrieval(m.tls)},
			&row{name: "round trips, TLS / cleartext, paired blocks of 100" + m.suffix, unit: "×100", f: x100(tripsRatio(m.clear, m.tls))},
			&row{name: "one-command sessions, TLS resumed / cleartext, paired blocks of 10" + m.suffix, unit: "×100", f: x100(resumedRatio(m.clear, m.tls))},
		)
	}
	measure(rows) // both modes interleaved, so that drift touches both alike
	table("TLS against cleartext, through the client dial (lib/locate), im2000-retrieved -l on loopback", rows[:9])
	table("The same, im2000-retrieved under tcpserver -RHl0 -c 40 (a process a connection) on loopback", rows[9:])
	fmt.Println()
	for i, mode := range []string{"listener mode (-l)", "tcpserver"} {
		m := func(j int) float64 { return median(rows[9*i+j].rates) }
		fmt.Printf("TLS / cleartext, %s: round trips **%.2f×** paired (%.2f× of the rows' medians; goal ≥ 0.8), resumed sessions **%.2f×** paired (%.2f×; goal ≥ 0.5), full-handshake sessions **%.2f×**, 10 MiB retrieval **%.2f×**\n",
			mode, m(7)/100, m(1)/m(0), m(8)/100, m(4)/m(2), m(3)/m(2), m(6)/m(5))
	}
}

// underTCPServer runs prog under tcpserver on addr as conf/setup.sh's
// services do (env IM2000_CONF=conf tcpserver -RHl0 -c 40 host port prog
// [flags]): no other IM2000_ variable, so the store comes from the
// store file.
func underTCPServer(addr, confDir, prog string, flags ...string) func() {
	tcpserver, err := exec.LookPath("tcpserver")
	if err != nil {
		log("tcpserver not found: apt-get install ucspi-tcp")
		os.Exit(111)
	}
	host, port, _ := cut(addr)
	cmd := exec.Command(tcpserver, append([]string{"-RHl0", "-c", "40", host, port, prog}, flags...)...)
	cmd.Env = []string{"IM2000_CONF=" + confDir}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "IM2000_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	must(cmd.Start())
	for i := 0; ; i++ { // a bare connection: a TLS server has no cleartext greeting to check
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		if i == 200 {
			log("tcpserver on %s did not come up", addr)
			os.Exit(111)
		}
		time.Sleep(25 * time.Millisecond)
	}
	return func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }
}

// x100 scales a ratio to a row's "×100" unit, so that table's whole
// numbers keep two digits of it.
func x100(f func() (float64, error)) func() (float64, error) {
	return func() (float64, error) {
		r, err := f()
		return 100 * r, err
	}
}
