package main

// A scripted relay for the hostile-relay tests (smarthost_hostile_test.go).

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"im2000/lib/addr"
	"im2000/lib/store"
)

// relayScript is what a scripted relay answers besides "250 ok".
type relayScript struct {
	cert       *tls.Certificate
	ehlo       string                   // extension lines after the first
	ehloReply  string                   // the whole reply to EHLO instead (e.g. 502)
	mail       func(line string) string // reply to MAIL; nil or "": 250
	greet      string                   // "": 220
	auth       string                   // reply to AUTH
	rcpt       func(line string) string // reply to RCPT; nil: 250
	dataEnd    func(n int) string       // reply to the n-th final dot; "": 250
	afterData  func(n int)              // before that reply
	greetDelay func(n int) time.Duration
	quitDelay  time.Duration
}

// relaySaw is what the scripted relay saw.
type relaySaw struct {
	mu    sync.Mutex
	lines []string
	datas []string // raw, final dot included
	conns int
}

func (s *relaySaw) get() ([]string, []string, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.lines...), append([]string(nil), s.datas...), s.conns
}

func scriptedRelay(t *testing.T, b relayScript) (string, *relaySaw) {
	saw := &relaySaw{}
	a, _ := fakeRelay(t, func(c net.Conn, r *bufio.Reader, _ chan<- string) {
		saw.mu.Lock()
		saw.conns++
		n := saw.conns
		saw.mu.Unlock()
		if b.greetDelay != nil {
			time.Sleep(b.greetDelay(n))
		}
		if b.greet != "" {
			c.Write([]byte(b.greet))
			r.ReadString('\n')
			return
		}
		c.Write([]byte("220 relay\r\n"))
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			saw.mu.Lock()
			saw.lines = append(saw.lines, strings.TrimRight(line, "\r\n"))
			saw.mu.Unlock()
			up := strings.ToUpper(line)
			switch {
			case strings.HasPrefix(up, "EHLO") && b.ehloReply != "":
				c.Write([]byte(b.ehloReply))
			case strings.HasPrefix(up, "EHLO"):
				c.Write([]byte("250-relay\r\n" + b.ehlo + "250 HELP\r\n"))
			case strings.HasPrefix(up, "MAIL") && b.mail != nil && b.mail(line) != "":
				c.Write([]byte(b.mail(line)))
			case strings.HasPrefix(up, "STARTTLS"):
				c.Write([]byte("220 go ahead\r\n"))
				tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{*b.cert}})
				if tc.Handshake() != nil {
					return
				}
				c, r = tc, bufio.NewReader(tc)
				saw.mu.Lock()
				saw.lines = append(saw.lines, "--- TLS ---")
				saw.mu.Unlock()
			case strings.HasPrefix(up, "AUTH") && b.auth != "":
				c.Write([]byte(b.auth))
			case strings.HasPrefix(up, "RCPT") && b.rcpt != nil:
				c.Write([]byte(b.rcpt(line)))
			case strings.HasPrefix(up, "DATA"):
				c.Write([]byte("354 go on\r\n"))
				var raw strings.Builder
				for {
					l, err := r.ReadString('\n')
					raw.WriteString(l)
					if err != nil || l == ".\r\n" {
						break
					}
				}
				saw.mu.Lock()
				saw.datas = append(saw.datas, raw.String())
				nd := len(saw.datas)
				saw.mu.Unlock()
				if b.afterData != nil {
					b.afterData(nd)
				}
				reply := "250 2.0.0 Ok: queued as Q" + fmt.Sprint(nd) + "\r\n"
				if b.dataEnd != nil && b.dataEnd(nd) != "" {
					reply = b.dataEnd(nd)
				}
				c.Write([]byte(reply))
			case strings.HasPrefix(up, "QUIT"):
				time.Sleep(b.quitDelay)
				c.Write([]byte("221 bye\r\n"))
				return
			default:
				c.Write([]byte("250 ok\r\n"))
			}
		}
	})
	return a, saw
}

// draftMsg commits one more message with body to n recipients at
// example.net in a, loaded for notifyd.
func draftMsg(t *testing.T, a *store.Account, body string, n int) loaded {
	t.Helper()
	from, _ := addr.Parse("alice@example.org")
	var to []addr.Mailbox
	for i := 0; i < n; i++ {
		to = append(to, addr.Mailbox{Local: fmt.Sprintf("r%d", i), Domain: "example.net"})
	}
	d, err := a.NewDraft(store.Submission{Sender: from, Lifetime: time.Hour, Recipients: to}, store.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(d, body)
	env, err := d.Commit()
	if err != nil {
		t.Fatal(err)
	}
	l, ok := loadMessage(a, env.ID, time.Now())
	if !ok || l.msg == nil {
		t.Fatal("load")
	}
	for _, e := range l.entries {
		e.msg = l.msg
	}
	return l
}

func selfSigned(t *testing.T, name string) (tls.Certificate, *x509.CertPool) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(c)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}, pool
}

func relayConfig(d time.Duration) *config {
	cfg := testConfig()
	cfg.timeout = d
	return cfg
}
