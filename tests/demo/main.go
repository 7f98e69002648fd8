// Command demo is make demo: a complete two-user IM2000 system on loopback
// in a throwaway directory, with nothing but the built programs (servers
// listen themselves; no tcpserver, no root). alice sends bob a message and
// posts to a list; bob's store notifies his agent, bob fetches into a
// Maildir, and alice sees that he has it. Every connection is TLS, verified
// against a private CA the demo makes, as conf/setup.sh does.
package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"flag"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/bcrypt"
)

var (
	bin  string
	dir  string
	step = 0
)

func say(format string, a ...any) {
	step++
	fmt.Printf("\n== %d. %s\n", step, fmt.Sprintf(format, a...))
}

func die(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "demo: "+format+"\n", a...)
	os.Exit(111)
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		die("%v", err)
	}
	defer l.Close()
	return l.Addr().String()
}

// role is one party's configuration directory.
type role map[string]string

func (r role) write(path string) {
	for name, v := range r {
		p := filepath.Join(path, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(v+"\n"), 0o600); err != nil {
			die("%v", err)
		}
	}
}

func passwords(accounts ...string) string {
	var b strings.Builder
	for _, a := range accounts {
		h, _ := bcrypt.GenerateFromPassword([]byte(a+"-secret"), bcrypt.MinCost)
		fmt.Fprintf(&b, "%s:%s\n", a, h)
	}
	return strings.TrimSpace(b.String())
}

var procs []*exec.Cmd

func start(confDir string, env []string, prog string, args ...string) {
	cmd := exec.Command(filepath.Join(bin, prog), args...)
	cmd.Env = append(append(os.Environ(), "IM2000_CONF="+confDir), env...)
	logf, _ := os.Create(filepath.Join(dir, "log", prog))
	cmd.Stderr = logf
	if err := cmd.Start(); err != nil {
		die("%s: %v", prog, err)
	}
	procs = append(procs, cmd)
	fmt.Printf("   %-18s pid %d %s\n", prog, cmd.Process.Pid, strings.Join(args, " "))
}

func run(confDir string, env []string, stdin string, prog string, args ...string) string {
	cmd := exec.Command(filepath.Join(bin, prog), args...)
	cmd.Env = append(append(os.Environ(), "IM2000_CONF="+confDir), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		die("%s %v: %v\n%s", prog, args, err, errb.String())
	}
	return out.String()
}

func waitFor(what string, cond func() bool) {
	start := time.Now()
	for !cond() {
		if time.Since(start) > 30*time.Second {
			die("%s did not happen within 30 s; logs are in %s/log", what, dir)
		}
		time.Sleep(50 * time.Millisecond)
	}
	fmt.Printf("   (%s after %v)\n", what, time.Since(start).Round(time.Millisecond))
}

func count(path string) int {
	ents, _ := os.ReadDir(path)
	return len(ents)
}

func main() {
	began := time.Now()
	binFlag := flag.String("bin", "bin", "directory of the built programs")
	flag.Parse()
	var err error
	if bin, err = filepath.Abs(*binFlag); err != nil {
		die("%v", err)
	}
	if dir, err = os.MkdirTemp("", "im2000-demo-"); err != nil {
		die("%v", err)
	}
	defer func() {
		say("stopping everything (SIGTERM) and removing %s", dir)
		for _, p := range procs {
			p.Process.Signal(syscall.SIGTERM)
		}
		for _, p := range procs {
			p.Wait()
		}
		os.RemoveAll(dir)
		fmt.Printf("\ndone in %v\n", time.Since(began).Round(100*time.Millisecond))
	}()
	os.MkdirAll(filepath.Join(dir, "log"), 0o755)
	msoap, msrap, rnasp, rnaqp := freeAddr(), freeAddr(), freeAddr(), freeAddr()

	say("a private CA for example.org and example.net (as conf/setup.sh makes one): every connection is TLS")
	ca, cert, key := privateCA(filepath.Join(dir, "tls"), "example.org", "example.net")
	fmt.Printf("   CA %s, certificate %s\n", ca, cert)
	tlsConf := role{"tlscert": cert, "tlskey": key, "tlsca": ca}

	say("two hosts in %s, all on loopback, no root, no privileged port", dir)
	fmt.Printf("   example.org: alice's message store   MSOAP %s, MSRAP %s\n", msoap, msrap)
	fmt.Printf("   example.net: bob's notification agent RNASP %s, RNAQP %s\n", rnasp, rnaqp)
	storeConf, agentConf, bobConf := filepath.Join(dir, "store.conf"), filepath.Join(dir, "agent.conf"), filepath.Join(dir, "bob.conf")
	storeDir, spool, maildir := filepath.Join(dir, "store"), filepath.Join(dir, "agent"), filepath.Join(dir, "bob", "Maildir")
	os.MkdirAll(storeDir, 0o755)
	os.MkdirAll(filepath.Join(spool, "bob"), 0o700)
	role{"me": "example.org", "store": storeDir, "passwords": passwords("alice"), "lists/news": "alice",
		"storelocation": "example.org", "storessl": msrap, "routes": "_rnasps._tcp.example.net " + rnasp,
		"retrybase": "1", "resend": "5"}.write(storeConf)
	role{"me": "example.net", "agent": spool, "passwords": passwords("bob")}.write(agentConf)
	role{"me": "example.net", "rna": "example.net", "rnasp": "example.net", "password": "bob-secret",
		// The TLS forms only; _msraps._tcp.example.org is also what binds
		// alice's store to her domain.
		"routes":   "_msraps._tcp.example.org " + msrap + "\n_rnaqps._tcp.example.net " + rnaqp + "\n_rnasps._tcp.example.net " + rnasp,
		"listfile": "news example.org", "listinterval": "1", "listdstate": filepath.Join(dir, "bob", "listd")}.write(bobConf)
	for _, c := range []string{storeConf, agentConf, bobConf} {
		tlsConf.write(c)
	}

	say("starting the servers with -tls (each also runs under tcpserver; here they listen themselves)")
	start(storeConf, nil, "im2000-submitd", "-l", msoap, "-tls")
	start(storeConf, nil, "im2000-retrieved", "-l", msrap, "-tls")
	start(storeConf, nil, "im2000-notifyd")
	start(agentConf, nil, "im2000-agentd", "-l", rnasp, "-tls")
	start(agentConf, nil, "im2000-queryd", "-l", rnaqp, "-tls")
	start(bobConf, []string{"IM2000_ACCOUNT=bob"}, "im2000-listd")
	time.Sleep(500 * time.Millisecond)

	alice := []string{"IM2000_ACCOUNT=alice"}
	say("alice sends bob a message with im2000-inject: it is written once, into her own archive")
	id := strings.TrimSpace(run(storeConf, alice, "To: Bob <bob@example.net>\nSubject: Lunch on Friday?\n\nShall we try the new place on the corner?\n", "im2000-inject", "-t"))
	fmt.Printf("   message id %s\n", id)
	say("notifyd hands bob's agent a short notification (no copy of the message)")
	waitFor("notification at bob's agent", func() bool { return count(filepath.Join(spool, "bob")) > 0 })
	fmt.Print(indent(run(storeConf, alice, "", "im2000-status", id)))

	say("alice posts to the list 'news': indexed at her store by list name and date, nobody subscribed")
	post := strings.TrimSpace(run(storeConf, alice, "Subject: IM2000 demo list post\n\nLists are archives you scan.\n", "im2000-inject", "-l", "news"))
	fmt.Printf("   message id %s\n", post)
	say("bob's im2000-listd scans the list (posts show after a 5-second settling lag) and notifies his agent")
	waitFor("list post at bob's agent", func() bool { return count(filepath.Join(spool, "bob")) > 1 })

	say("bob runs im2000-fetch: it asks his agent, retrieves from alice's store, delivers into his Maildir, confirms")
	run(bobConf, []string{"IM2000_ACCOUNT=bob"}, "", "im2000-fetch", "-d", maildir)
	ents, _ := os.ReadDir(filepath.Join(maildir, "new"))
	for _, e := range ents {
		b, _ := os.ReadFile(filepath.Join(maildir, "new", e.Name()))
		fmt.Printf("   %s/new/%s:\n%s", maildir, e.Name(), indent(headerAndBody(string(b))))
	}
	if len(ents) != 2 {
		die("bob's Maildir has %d messages, want 2", len(ents))
	}

	say("alice's view: no bounces, the store's record per recipient (im2000-status)")
	fmt.Print(indent(run(storeConf, alice, "", "im2000-status")))
	fmt.Print(indent(run(storeConf, alice, "", "im2000-status", id)))
	if !strings.Contains(run(storeConf, alice, "", "im2000-status", id), "silenced\treadall") {
		die("alice's status does not show bob silenced/readall")
	}
	say("each client remembers the domains it reached over TLS, and will refuse cleartext from them")
	for _, c := range []string{storeConf, bobConf} {
		ents, _ := os.ReadDir(filepath.Join(c, "tlsdomains"))
		for _, e := range ents {
			fmt.Printf("   %s/tlsdomains/%s\n", filepath.Base(c), e.Name())
		}
	}
}

// privateCA makes a CA and a certificate from it for names and 127.0.0.1,
// in dir, and returns the paths of the CA, the certificate and its key.
func privateCA(dir string, names ...string) (ca, cert, key string) {
	os.MkdirAll(dir, 0o700)
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		die("%v", err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "im2000 demo CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		die("%v", err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	leafKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &leafKey.PublicKey, caKey)
	if err != nil {
		die("%v", err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(leafKey)
	ca, cert, key = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	for path, b := range map[string][]byte{
		ca:   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		cert: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		key:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}),
	} {
		if err := os.WriteFile(path, b, 0o600); err != nil {
			die("%v", err)
		}
	}
	return ca, cert, key
}

func headerAndBody(m string) string {
	var keep []string
	inHeader := true
	for _, l := range strings.Split(m, "\n") {
		if inHeader && l == "" {
			inHeader = false
		}
		if !inHeader || strings.HasPrefix(l, "Return-Path:") || strings.HasPrefix(l, "From:") || strings.HasPrefix(l, "To:") || strings.HasPrefix(l, "Subject:") {
			keep = append(keep, l)
		}
	}
	return strings.TrimRight(strings.Join(keep, "\n"), "\n") + "\n"
}

func indent(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		b.WriteString("   " + l + "\n")
	}
	return b.String()
}
