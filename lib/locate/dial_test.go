package locate

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"strconv"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"im2000/lib/locate/locatetest"
	"im2000/lib/tlsconf"
	"im2000/lib/tlsconf/tlstest"
)

// leaf makes a certificate for name signed by ca, valid until notAfter.
func leaf(t *testing.T, ca *tlstest.CA, name string, notAfter time.Time) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: notAfter, DNSNames: []string{name},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// serve accepts connections on a loopback port, over TLS with cert when
// it is given, and writes mark to each; it returns the port's address.
func serve(t *testing.T, cert *tls.Certificate, mark string) string {
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
			if cert != nil {
				c = tls.Server(c, &tls.Config{Certificates: []tls.Certificate{*cert}})
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				c.Write([]byte(mark))
			}()
		}
	}()
	return l.Addr().String()
}

// dialed dials rnasp at good.test and says what answered: "tls", "clear",
// or the error.
func dialed(t *testing.T, l *Locator) (string, error) {
	t.Helper()
	c, err := l.Dial(context.Background(), "rnasp", "good.test")
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 8)
	n, err := c.Read(b)
	if err != nil {
		return "", err
	}
	_, isTLS := c.(*tls.Conn)
	if isTLS != (string(b[:n]) == "tls") {
		t.Fatalf("%q answered on a connection whose TLS is %v", b[:n], isTLS)
	}
	return string(b[:n]), nil
}

func tlsLocator(t *testing.T, ca *tlstest.CA, routes map[string][]string, require ...string) *Locator {
	return &Locator{Routes: routes, Timeout: 2 * time.Second, TLS: tlsconf.NewClient(ca.Pool(), require, &tlsconf.Tracker{Dir: t.TempDir()})}
}

func TestDialTLSFirst(t *testing.T) {
	ca := tlstest.NewCA(t)
	good := leaf(t, ca, "good.test", time.Now().Add(time.Hour))
	tlsAddr, clearAddr := serve(t, &good, "tls"), serve(t, nil, "clear")
	l := tlsLocator(t, ca, map[string][]string{"_rnasps._tcp.good.test": {tlsAddr}, "_rnasp._tcp.good.test": {clearAddr}})
	if got, err := dialed(t, l); got != "tls" {
		t.Fatalf("with both forms routed: %q, %v; want the TLS form", got, err)
	}
	if why, ok := l.TLS.Required("rnasp", "good.test"); !ok {
		t.Fatal("a domain reached over TLS is not required to use it after")
	} else {
		t.Log(why)
	}
	// The same domain then offered only cleartext: a downgrade, and it
	// stays one for a new process (the record is on disk).
	delete(l.Routes, "_rnasps._tcp.good.test")
	if _, err := dialed(t, l); !errors.Is(err, tlsconf.ErrDowngrade) {
		t.Fatalf("cleartext after TLS: %v, want a downgrade", err)
	}
	// The TLS form routed but down, cleartext up: still a downgrade.
	l.Routes["_rnasps._tcp.good.test"] = []string{"127.0.0.1:" + strconv.Itoa(int(closedPort(t)))}
	if _, err := dialed(t, l); !errors.Is(err, tlsconf.ErrDowngrade) {
		t.Fatalf("TLS down, cleartext up, after TLS: %v, want a downgrade", err)
	}
}

func TestDialCleartextWhenNoTLS(t *testing.T) {
	ca := tlstest.NewCA(t)
	clearAddr := serve(t, nil, "clear")
	l := tlsLocator(t, ca, map[string][]string{"_rnasp._tcp.good.test": {clearAddr}})
	if got, err := dialed(t, l); got != "clear" {
		t.Fatalf("cleartext only: %q, %v", got, err)
	}
	if _, ok := l.TLS.Required("rnasp", "good.test"); ok {
		t.Fatal("cleartext made the domain required")
	}
	// A TLS form routed to a closed port: cleartext still, for a domain
	// not known for TLS.
	l.Routes["_rnasps._tcp.good.test"] = []string{"127.0.0.1:" + strconv.Itoa(int(closedPort(t)))}
	if got, err := dialed(t, l); got != "clear" {
		t.Fatalf("TLS form down: %q, %v", got, err)
	}
	// tlsrequire refuses it.
	l = tlsLocator(t, ca, map[string][]string{"_rnasp._tcp.good.test": {clearAddr}}, "Good.Test.")
	if _, err := dialed(t, l); !errors.Is(err, tlsconf.ErrDowngrade) {
		t.Fatalf("tlsrequire, cleartext only: %v, want a downgrade", err)
	}
}

// TestDialRoutedFormOnly: a domain routed in one form is not looked up in
// DNS for the other, though DNS would answer it: routes overrides DNS for
// the service at that domain as a whole.
func TestDialRoutedFormOnly(t *testing.T) {
	ca := tlstest.NewCA(t)
	good := leaf(t, ca, "good.test", time.Now().Add(time.Hour))
	port := func(a string) uint16 { _, p, _ := net.SplitHostPort(a); n, _ := strconv.Atoi(p); return uint16(n) }
	tlsAddr, clearAddr := serve(t, &good, "tls"), serve(t, nil, "clear")
	d := locatetest.StartDNS(t, map[string][]dnsmessage.Resource{
		"_rnasps._tcp.good.test.": {locatetest.SRV("_rnasps._tcp.good.test.", 1, 0, port(tlsAddr), "host.good.test.")},
		"_rnasp._tcp.good.test.":  {locatetest.SRV("_rnasp._tcp.good.test.", 1, 0, port(clearAddr), "host.good.test.")},
		"host.good.test.":         {locatetest.A("host.good.test.")},
	})
	l := tlsLocator(t, ca, map[string][]string{"_rnasp._tcp.good.test": {clearAddr}})
	l.Resolvers = []string{d.Addr}
	if got, err := dialed(t, l); got != "clear" {
		t.Fatalf("routed cleartext only, DNS offering TLS: %q, %v; want the routed server", got, err)
	}
	l = tlsLocator(t, ca, map[string][]string{"_rnasps._tcp.good.test": {"127.0.0.1:" + strconv.Itoa(int(closedPort(t)))}})
	l.Resolvers = []string{d.Addr}
	if got, err := dialed(t, l); !errors.Is(err, ErrNoServer) {
		t.Fatalf("routed TLS form down, DNS offering cleartext: %q, %v; want no server", got, err)
	}
}

func TestDialBadCertificate(t *testing.T) {
	ca, other := tlstest.NewCA(t), tlstest.NewCA(t)
	clearAddr := serve(t, nil, "clear")
	for _, tc := range []struct {
		name string
		cert tls.Certificate
	}{
		{"wrong CA", leaf(t, other, "good.test", time.Now().Add(time.Hour))},
		{"expired", leaf(t, ca, "good.test", time.Now().Add(-time.Hour))},
		{"wrong name", leaf(t, ca, "evil.test", time.Now().Add(time.Hour))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := tlsLocator(t, ca, map[string][]string{"_rnasps._tcp.good.test": {serve(t, &tc.cert, "tls")}, "_rnasp._tcp.good.test": {clearAddr}})
			if got, err := dialed(t, l); !errors.Is(err, tlsconf.ErrBadCert) {
				t.Fatalf("got %q, %v; want ErrBadCert and no cleartext", got, err)
			}
			if _, ok := l.TLS.Required("rnasp", "good.test"); ok {
				t.Fatal("a bad certificate made the domain known for TLS")
			}
			// Known for TLS: the same offer is a downgrade.
			if err := l.TLS.Reached("rnasp", "good.test"); err != nil {
				t.Fatal(err)
			}
			if _, err := dialed(t, l); !errors.Is(err, tlsconf.ErrDowngrade) {
				t.Fatalf("bad certificate at a domain known for TLS: %v, want a downgrade", err)
			}
		})
	}
}

func TestDialTLSLiteral(t *testing.T) {
	ca := tlstest.NewCA(t)
	good := leaf(t, ca, "good.test", time.Now().Add(time.Hour))
	addr := serve(t, &good, "tls")
	l := tlsLocator(t, ca, nil)
	c, err := l.DialTLS(context.Background(), "msrap", addr, "good.test")
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if _, ok := l.TLS.Required("msrap", "good.test"); !ok {
		t.Fatal("a store reached over TLS for its sender's domain is not remembered")
	}
	if _, err := l.DialTLS(context.Background(), "msrap", addr, "other.test"); !errors.Is(err, tlsconf.ErrBadCert) {
		t.Fatalf("a literal store verified for another domain: %v, want ErrBadCert", err)
	}
}

// TestDialTLSBySRV: by DNS, the TLS form's SRV record is followed first
// and its target verified for the domain looked up, not for the target's
// name (a forged SRV answer pointing at a host with a valid certificate
// for itself gets nowhere); a domain without a TLS form costs the
// NXDOMAIN of its _services name and falls to cleartext.
func TestDialTLSBySRV(t *testing.T) {
	ca := tlstest.NewCA(t)
	good := leaf(t, ca, "good.test", time.Now().Add(time.Hour))
	target := leaf(t, ca, "host.good.test", time.Now().Add(time.Hour)) // valid for the target only
	port := func(a string) uint16 { _, p, _ := net.SplitHostPort(a); n, _ := strconv.Atoi(p); return uint16(n) }
	tlsAddr, targetAddr, clearAddr := serve(t, &good, "tls"), serve(t, &target, "tls"), serve(t, nil, "clear")
	d := locatetest.StartDNS(t, map[string][]dnsmessage.Resource{
		"_rnasps._tcp.good.test.":   {locatetest.SRV("_rnasps._tcp.good.test.", 1, 0, port(tlsAddr), "host.good.test.")},
		"_rnasp._tcp.good.test.":    {locatetest.SRV("_rnasp._tcp.good.test.", 1, 0, port(clearAddr), "host.good.test.")},
		"_rnasps._tcp.forged.test.": {locatetest.SRV("_rnasps._tcp.forged.test.", 1, 0, port(targetAddr), "host.good.test.")},
		"_rnasp._tcp.plain.test.":   {locatetest.SRV("_rnasp._tcp.plain.test.", 1, 0, port(clearAddr), "host.good.test.")},
		"host.good.test.":           {locatetest.A("host.good.test.")},
	})
	l := &Locator{Resolvers: []string{d.Addr}, Timeout: 2 * time.Second, TLS: tlsconf.NewClient(ca.Pool(), nil, &tlsconf.Tracker{Dir: t.TempDir()})}
	if got, err := dialed(t, l); got != "tls" {
		t.Fatalf("good.test by SRV: %q, %v", got, err)
	}
	if c, err := l.Dial(context.Background(), "rnasp", "forged.test"); !errors.Is(err, tlsconf.ErrBadCert) {
		if c != nil {
			c.Close()
		}
		t.Fatalf("a target with a certificate for its own name only: %v, want ErrBadCert", err)
	}
	c, err := l.Dial(context.Background(), "rnasp", "plain.test")
	if err != nil {
		t.Fatalf("a domain without a TLS form: %v", err)
	}
	if _, isTLS := c.(*tls.Conn); isTLS {
		t.Fatal("plain.test reached over TLS")
	}
	c.Close()
}
