package locate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"im2000/lib/locate/locatetest"
)

// nsdBinary finds nsd (Debian puts it in /usr/sbin). Without it the test
// is skipped, unless it runs as root: then tests/deps.sh should have
// installed it, and its absence is a failure.
func nsdBinary(t *testing.T) string {
	if p, err := exec.LookPath("nsd"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/sbin/nsd"); err == nil {
		return "/usr/sbin/nsd"
	}
	if os.Geteuid() == 0 {
		t.Fatal("nsd is not installed: run tests/deps.sh")
	}
	t.Skip("nsd is not installed (tests/deps.sh installs it as root)")
	return ""
}

// freeDNSPort returns a loopback port free for both UDP and TCP.
func freeDNSPort(t *testing.T) int {
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		pc, err := net.ListenPacket("udp", l.Addr().String())
		l.Close()
		if err == nil {
			pc.Close()
			return port
		}
	}
	t.Fatal("no free port for both UDP and TCP")
	return 0
}

// startNSD runs nsd, the authoritative DNS server, as an ordinary process
// in the foreground on a free loopback port, serving zones (origin →
// zone file text), and stops it by its process id when the test ends. It
// returns the server's ip:port once nsd has said it started.
func startNSD(t *testing.T, zones map[string]string) string {
	bin := nsdBinary(t)
	dir := t.TempDir()
	var conf strings.Builder
	for origin, text := range zones {
		if err := os.WriteFile(filepath.Join(dir, origin+".zone"), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&conf, "zone:\n\tname: %q\n\tzonefile: %q\n", origin, origin+".zone")
	}
	for attempt := 1; ; attempt++ {
		port := freeDNSPort(t)
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		log := filepath.Join(dir, "nsd.log")
		os.Remove(log)
		server := fmt.Sprintf(`server:
	ip-address: 127.0.0.1@%d
	do-ip4: yes
	do-ip6: no
	username: ""
	chroot: ""
	zonesdir: %q
	database: ""
	zonelistfile: %q
	xfrdfile: %q
	xfrdir: %q
	pidfile: %q
	cookie-secret-file: %q
	logfile: %q
	server-count: 1
	verbosity: 1
	hide-version: yes
remote-control:
	control-enable: no
`, port, dir, filepath.Join(dir, "zone.list"), filepath.Join(dir, "xfrd.state"), dir,
			filepath.Join(dir, "nsd.pid"), filepath.Join(dir, "cookiesecrets.txt"), log)
		cfg := filepath.Join(dir, "nsd.conf")
		if err := os.WriteFile(cfg, []byte(server+conf.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		cmd := exec.Command(bin, "-d", "-c", cfg)
		cmd.Stdout, cmd.Stderr = &out, &out
		// Its own process group, so that the server processes nsd forks
		// go with it.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		stop := sync.OnceFunc(func() {
			pid := cmd.Process.Pid
			select {
			case <-exited:
			default:
				syscall.Kill(pid, syscall.SIGTERM)
				select {
				case <-exited:
				case <-time.After(5 * time.Second):
					t.Errorf("nsd (pid %d) did not stop on SIGTERM: killed", pid)
				}
			}
			syscall.Kill(-pid, syscall.SIGKILL) // its children, if any are left
			<-exited
		})
		t.Cleanup(stop)
		started := time.Now()
		deadline := started.Add(10 * time.Second)
		for {
			b, _ := os.ReadFile(log)
			if bytes.Contains(b, []byte("nsd started")) {
				t.Logf("nsd (pid %d) serving on %s after %v", cmd.Process.Pid, addr, time.Since(started))
				return addr
			}
			select {
			case <-exited:
			case <-time.After(20 * time.Millisecond):
				if time.Now().Before(deadline) {
					continue
				}
				stop()
				t.Fatalf("nsd did not start within 10 s:\n%s\n%s", out.String(), b)
			}
			// It exited: the port may have been taken meanwhile.
			stop()
			if attempt == 3 || !bytes.Contains(b, []byte("in use")) {
				t.Fatalf("nsd exited:\n%s\n%s", out.String(), b)
			}
			break
		}
	}
}

// TestNSD locates services against a real authoritative DNS server, as a
// store finds an agent on the Internet: through a relay that loses the
// first datagram, NXDOMAIN for a missing SRV owner name, REFUSED for a
// zone it does not serve, an SRV set too big for UDP.
func TestNSD(t *testing.T) {
	_, live := listen(t)
	var big strings.Builder
	for i := range 40 {
		fmt.Fprintf(&big, "_msrap._tcp IN SRV 10 %d %d agent\n", i, live)
	}
	head := func(origin string) string {
		return fmt.Sprintf("$ORIGIN %s.\n$TTL 60\n@ IN SOA ns.%s. hostmaster.%s. 1 3600 600 86400 60\n@ IN NS ns.%s.\n", origin, origin, origin, origin)
	}
	addr := startNSD(t, map[string]string{
		"im2000.test": head("im2000.test") + fmt.Sprintf(`ns IN A 127.0.0.1
_rnasp._tcp IN SRV 10 0 %d agent
agent IN A 127.0.0.1
nosrv IN A 127.0.0.1
`, live) + big.String(),
		// a zone with nothing but its SOA and NS: a domain without IM2000
		"plain.test": head("plain.test") + "ns IN A 127.0.0.1\n",
	})
	lossy := locatetest.StartRelay(t, addr, 1)
	l := &Locator{Resolvers: []string{lossy.Addr}, Timeout: 2 * time.Second}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()

	// The first datagram is lost; the retry finds the agent.
	start := time.Now()
	targets, err := l.Targets(ctx, "rnasp", "im2000.test")
	want := net.JoinHostPort("127.0.0.1", strconv.Itoa(int(live)))
	if err != nil || len(targets) != 1 || targets[0] != want {
		t.Fatalf("SRV present, first datagram lost: %v, %v", targets, err)
	}
	if dropped, relayed := lossy.Counts(); dropped != 1 || relayed < 1 {
		t.Errorf("relay: %d lost, %d passed on", dropped, relayed)
	}
	t.Logf("SRV found in %v with the first datagram lost", time.Since(start))
	if took := time.Since(start); took > l.Timeout {
		t.Errorf("took %v", took)
	}
	c, err := l.Dial(ctx, "rnasp", "im2000.test")
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	c.Close()

	for _, tc := range []struct {
		domain string
		want   error
		why    string
	}{
		{"nosrv.im2000.test", ErrNoService, "a name with an address and no SRV record"},
		{"plain.test", ErrNoService, "a zone without the SRV record"},
		{"nosuch.im2000.test", ErrBadDomain, "a name that does not exist"},
		{"elsewhere.example", ErrNoAnswer, "a zone the server refuses (REFUSED is no answer)"},
	} {
		// Each lookup loses its first datagram too.
		lossy := locatetest.StartRelay(t, addr, 1)
		l := &Locator{Resolvers: []string{lossy.Addr}, Timeout: 2 * time.Second}
		start := time.Now()
		_, err := l.Targets(ctx, "rnasp", tc.domain)
		took := time.Since(start)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s (%s): %v, want %v", tc.domain, tc.why, err, tc.want)
		}
		if took > 3*l.Timeout {
			t.Errorf("%s: took %v", tc.domain, took)
		}
		t.Logf("%s (%s): %v in %v", tc.domain, tc.why, err, took)
	}

	// nsd says NXDOMAIN for the missing SRV owner name itself: the case
	// that must not be taken for a bad domain.
	direct := &Locator{Resolvers: []string{addr}, Timeout: 2 * time.Second}
	if rcode, _, err := direct.query(ctx, "_rnasp._tcp.plain.test", dnsmessage.TypeSRV); err != nil || rcode != dnsmessage.RCodeNameError {
		t.Errorf("nsd for a missing SRV name: %v, %v; want NXDOMAIN", rcode, err)
	}

	// 40 SRV records do not fit in 512 octets: truncated over UDP, asked
	// again over TCP (through the relay, whose TCP side loses nothing).
	targets, err = l.Targets(ctx, "msrap", "im2000.test")
	if err != nil || len(targets) != 40 {
		t.Errorf("truncated answer: %d targets, %v", len(targets), err)
	}

	// A dead resolver first: the next one answers.
	dead := locatetest.StartRelay(t, addr, 1<<30)
	rot := &Locator{Resolvers: []string{dead.Addr, addr}, Timeout: 2 * time.Second}
	if _, err := rot.Targets(ctx, "rnasp", "im2000.test"); err != nil {
		t.Errorf("dead resolver first: %v", err)
	}
}
