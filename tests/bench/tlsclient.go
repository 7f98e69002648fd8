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
	"path/filepath"
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
// verified) against im2000-retrieved listening twice on one store, in
// cleartext and with -tls: round trips on one session, one-command
// sessions (TLS with a full handshake each, and resumed from the
// process's session cache), and the retrieval of a 10 MiB message.
func benchTLSClient() {
	tmp, _ := os.MkdirTemp("", "im2000-bench-tls-")
	defer os.RemoveAll(tmp)
	b, stop := startStore(tmp)
	defer stop()
	pool := benchCert(filepath.Join(tmp, "conf"), "tls.example.org")
	tlsAddr := "127.0.0.1:" + freePort()
	bin, _ := filepath.Abs(*binDir)
	stopTLS := serve(tlsAddr, filepath.Join(bin, "im2000-retrieved"), "-l", tlsAddr, "-c", "20", "-tls")
	defer stopTLS()
	msg10m := sized(10 << 20)
	big, err := b.submitN(1, msg10m)
	must(err)
	rid := b.rid(big[0])

	// clear.example.org has no TLS form (and no DNS: the TLS lookup fails
	// at once), as a domain without TLS costs a client.
	routes := map[string][]string{"_msraps._tcp.tls.example.org": {tlsAddr}, "_msrap._tcp.clear.example.org": {b.msrap}}
	shared := tlsconf.NewClient(pool, nil, nil)
	dial := func(c *tlsconf.Client, domain string) (*session.Client, error) {
		l := &locate.Locator{Routes: routes, Timeout: 5 * time.Second, TLS: c}
		s, err := session.Connect(context.Background(), l, msrap.Protocol, domain, time.Minute)
		if err == nil && (s.TLSState() != nil) != (domain == "tls.example.org") {
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
			if domain == "tls.example.org" && (resumed == nsess) == fresh {
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
	rows := []*row{
		{name: "MSRAP round trips (QuerySize), one session, cleartext", unit: "/s", f: roundTrips("clear.example.org")},
		{name: "MSRAP round trips (QuerySize), one session, TLS", unit: "/s", f: roundTrips("tls.example.org")},
		{name: "one-command sessions, cleartext", unit: "/s", f: sessions("clear.example.org", true)},
		{name: "one-command sessions, TLS, full handshake each", unit: "/s", f: sessions("tls.example.org", true)},
		{name: "one-command sessions, TLS, resumed", unit: "/s", f: sessions("tls.example.org", false)},
		{name: "MSRAP retrieval of a 10 MiB message, cleartext", unit: "MB/s", f: retrieval("clear.example.org")},
		{name: "MSRAP retrieval of a 10 MiB message, TLS", unit: "MB/s", f: retrieval("tls.example.org")},
	}
	measure(rows)
	table("TLS against cleartext, through the client dial (lib/locate), im2000-retrieved -l on loopback", rows)
	m := func(i int) float64 { return median(rows[i].rates) }
	fmt.Printf("\nTLS / cleartext: round trips **%.2f×** (goal ≥ 0.8), resumed sessions **%.2f×** (goal ≥ 0.5), full-handshake sessions **%.2f×**, 10 MiB retrieval **%.2f×**\n",
		m(1)/m(0), m(4)/m(2), m(3)/m(2), m(6)/m(5))
}
