package tests

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The federation test's network (namespaces on a bridge) and its DNS
// server (nsd); tests/federation_test.go has the hosts and the test.

// lan is a network of namespaces joined by a bridge in this (the root)
// namespace, each with a veth pair: hosts on one link, as on a LAN, with
// the test's DNS server on the bridge's own address.
type lan struct {
	t      *testing.T
	ip     string // the ip command
	bridge string
	net3   string // the first three octets of the /24
	hosts  map[string]string
	links  map[string]string // namespace: its veth's root side
}

// newLAN makes the bridge and names the /24 after the process id, so that
// parallel runs do not meet; everything is removed when the test ends.
func newLAN(t *testing.T) *lan {
	ip, err := exec.LookPath("ip")
	if err != nil {
		t.Fatal("ip (iproute2) is not installed: run tests/deps.sh")
	}
	pid := os.Getpid() % 100000
	n := &lan{t: t, ip: ip, bridge: fmt.Sprintf("im2kb%d", pid), net3: fmt.Sprintf("10.232.%d", pid%250),
		hosts: map[string]string{}, links: map[string]string{}}
	t.Cleanup(func() { exec.Command(ip, "link", "del", n.bridge).Run() })
	n.run("link", "add", n.bridge, "type", "bridge")
	n.run("addr", "add", n.net3+".254/24", "dev", n.bridge)
	n.run("link", "set", n.bridge, "up")
	return n
}

func (n *lan) run(args ...string) {
	n.t.Helper()
	if out, err := exec.Command(n.ip, args...).CombinedOutput(); err != nil {
		n.t.Fatalf("ip %s: %v: %s (the test needs root for network namespaces)", strings.Join(args, " "), err, out)
	}
}

// host adds a namespace named after the test's process with the given
// last octets as its addresses (the first is its link's), and returns the
// namespace's name.
func (n *lan) host(name string, octets ...int) string {
	pid := os.Getpid() % 100000
	ns := fmt.Sprintf("im2kf%s%d", name, pid)
	root, inner := fmt.Sprintf("im2kr%s%d", name, pid), fmt.Sprintf("im2ki%s%d", name, pid)
	n.t.Cleanup(func() {
		exec.Command(n.ip, "link", "del", root).Run()
		exec.Command(n.ip, "netns", "del", ns).Run()
	})
	n.run("netns", "add", ns)
	n.run("link", "add", root, "type", "veth", "peer", "name", inner)
	n.run("link", "set", inner, "netns", ns)
	n.run("link", "set", root, "master", n.bridge)
	n.run("link", "set", root, "up")
	for _, o := range octets {
		n.run("netns", "exec", ns, "ip", "addr", "add", fmt.Sprintf("%s.%d/24", n.net3, o), "dev", inner)
	}
	n.run("netns", "exec", ns, "ip", "link", "set", inner, "up")
	n.run("netns", "exec", ns, "ip", "link", "set", "lo", "up")
	n.links[ns] = root
	return ns
}

// cut takes a host off the network (its link on the bridge goes down),
// and mend puts it back.
func (n *lan) cut(ns string)  { n.run("link", "set", n.links[ns], "down") }
func (n *lan) mend(ns string) { n.run("link", "set", n.links[ns], "up") }

// nsdServer is nsd serving zones on addr:53 in this namespace, stopped
// and started again as the test says.
type nsdServer struct {
	t    *testing.T
	conf string
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

func newNSD(t *testing.T, addr string, zones map[string]string) *nsdServer {
	bin, err := exec.LookPath("nsd")
	if err != nil {
		if _, err := os.Stat("/usr/sbin/nsd"); err != nil {
			t.Fatal("nsd is not installed: run tests/deps.sh")
		}
		bin = "/usr/sbin/nsd"
	}
	dir := t.TempDir()
	var b strings.Builder
	fmt.Fprintf(&b, `server:
	ip-address: %s@53
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
remote-control:
	control-enable: no
`, addr, dir, dir+"/zone.list", dir+"/xfrd.state", dir, dir+"/nsd.pid", dir+"/cookiesecrets.txt", dir+"/nsd.log")
	for origin, text := range zones {
		if err := os.WriteFile(filepath.Join(dir, origin+".zone"), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "zone:\n\tname: %q\n\tzonefile: %q\n", origin, origin+".zone")
	}
	s := &nsdServer{t: t, conf: filepath.Join(dir, "nsd.conf")}
	if err := os.WriteFile(s.conf, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	s.cmd = exec.Command(bin, "-d", "-c", s.conf)
	s.start()
	t.Cleanup(s.stop)
	return s
}

// start runs nsd and waits until it says it serves.
func (s *nsdServer) start() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	log := filepath.Join(filepath.Dir(s.conf), "nsd.log")
	os.Remove(log)
	cmd := exec.Command(s.cmd.Path, s.cmd.Args[1:]...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.cmd, s.done = cmd, make(chan struct{})
	done := s.done
	go func() { cmd.Wait(); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(log)
		if bytes.Contains(b, []byte("nsd started")) {
			return
		}
		select {
		case <-done:
			s.t.Fatalf("nsd exited:\n%s\n%s", out.String(), b)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("nsd did not start within 10 s:\n%s\n%s", out.String(), b)
		}
	}
}

// stop ends nsd and the processes it forked (its process group).
func (s *nsdServer) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done == nil {
		return
	}
	pid := s.cmd.Process.Pid
	syscall.Kill(pid, syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
	}
	syscall.Kill(-pid, syscall.SIGKILL)
	<-s.done
	s.done = nil
}

// zone is a zone file for origin: its SOA and NS, and the records given.
func zone(origin, nsAddr string, records ...string) string {
	return fmt.Sprintf("$ORIGIN %s.\n$TTL 60\n@ IN SOA ns.%s. hostmaster.%s. 1 3600 600 86400 5\n@ IN NS ns.%s.\nns IN A %s\n%s",
		origin, origin, origin, origin, nsAddr, strings.Join(records, ""))
}

// reload serves origin's zone as text from now on: nsd stops, the file
// is rewritten, and nsd starts again (it reads zone files at start).
func (s *nsdServer) reload(origin, text string) {
	s.t.Helper()
	s.stop()
	f := filepath.Join(filepath.Dir(s.conf), origin+".zone")
	if err := os.WriteFile(f, []byte(text), 0o644); err != nil {
		s.t.Fatal(err)
	}
	s.start()
}
