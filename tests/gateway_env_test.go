package tests

import (
	"bytes"
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
)

// The outside world of the gateway tests: a real postfix (the SMTP
// world's MTA) and a real nsd (the senders' SPF and DKIM records).

// startGatewayNSD runs nsd in the foreground on a free loopback port,
// serving zones (origin -> records below the SOA and NS), and stops it by
// its process id when the test ends. It returns ip:port.
func startGatewayNSD(t *testing.T, zones map[string]string) string {
	bin, err := exec.LookPath("nsd")
	if err != nil {
		if _, err := os.Stat("/usr/sbin/nsd"); err != nil {
			t.Fatal("nsd is not installed: run tests/deps.sh")
		}
		bin = "/usr/sbin/nsd"
	}
	dir := t.TempDir()
	var conf strings.Builder
	for origin, records := range zones {
		text := fmt.Sprintf("$ORIGIN %s.\n$TTL 60\n@ IN SOA ns.%s. hostmaster.%s. 1 3600 600 86400 60\n@ IN NS ns.%s.\nns IN A 127.0.0.1\n%s", origin, origin, origin, origin, records)
		if err := os.WriteFile(filepath.Join(dir, origin+".zone"), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&conf, "zone:\n\tname: %q\n\tzonefile: %q\n", origin, origin+".zone")
	}
	for attempt := 1; ; attempt++ {
		port := freePort(t)
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		log := filepath.Join(dir, "nsd.log")
		os.Remove(log)
		server := fmt.Sprintf("server:\n\tip-address: 127.0.0.1@%d\n\tdo-ip4: yes\n\tdo-ip6: no\n\tusername: \"\"\n\tchroot: \"\"\n\tzonesdir: %q\n\tdatabase: \"\"\n\tzonelistfile: %q\n\txfrdfile: %q\n\txfrdir: %q\n\tpidfile: %q\n\tcookie-secret-file: %q\n\tlogfile: %q\n\tserver-count: 1\n\tverbosity: 1\nremote-control:\n\tcontrol-enable: no\n",
			port, dir, filepath.Join(dir, "zone.list"), filepath.Join(dir, "xfrd.state"), dir, filepath.Join(dir, "nsd.pid"), filepath.Join(dir, "cookiesecrets.txt"), log)
		cfg := filepath.Join(dir, "nsd.conf")
		if err := os.WriteFile(cfg, []byte(server+conf.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		cmd := exec.Command(bin, "-d", "-c", cfg)
		cmd.Stdout, cmd.Stderr = &out, &out
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // its forked servers go with it
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
				}
			}
			syscall.Kill(-pid, syscall.SIGKILL)
			<-exited
		})
		t.Cleanup(stop)
		deadline := time.Now().Add(10 * time.Second)
		for {
			b, _ := os.ReadFile(log)
			if bytes.Contains(b, []byte("nsd started")) {
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
			stop()
			if attempt == 3 || !bytes.Contains(b, []byte("in use")) {
				t.Fatalf("nsd exited:\n%s\n%s", out.String(), b)
			}
			break
		}
	}
}

// postfixHost is a private postfix instance: its own configuration
// directory, queue and log under a test directory, its smtpd on a free
// loopback port.
type postfixHost struct {
	dir  string // config in dir/etc, queue in dir/queue
	addr string // its smtpd
	log  string // its maillog_file
}

// startPostfix starts postfix with main.cf settings extra (one per line)
// and a transport table, and stops it (postfix stop) when the test ends.
// postfix starts as root and runs its daemons as the user postfix, so
// the test's directories are opened to it.
func startPostfix(t *testing.T, extra, transport string) *postfixHost {
	return startPostfixAt(t, fmt.Sprintf("127.0.0.1:%d", freePort(t)), extra, transport, nil)
}

// startPostfixAt is startPostfix with its smtpd on addr. Every @DIR@ in
// extra is the instance's directory; files are more files for its etc/.
func startPostfixAt(t *testing.T, addr, extra, transport string, files map[string]string) *postfixHost {
	if _, err := os.Stat("/usr/sbin/postfix"); err != nil {
		t.Fatal("postfix is not installed: run tests/deps.sh")
	}
	if os.Geteuid() != 0 {
		t.Fatal("postfix starts as root: run the tests as root, as CI does (tests/deps.sh)")
	}
	dir := t.TempDir()
	for d := dir; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}
	h := &postfixHost{dir: dir, addr: addr, log: filepath.Join(dir, "maillog")}
	for _, d := range []string{"etc", "queue", "data", "vmail"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"data", "vmail"} {
		if err := os.Chown(filepath.Join(dir, d), postfixUID(t), -1); err != nil {
			t.Fatal(err)
		}
	}
	main := fmt.Sprintf(`compatibility_level = 3.6
queue_directory = %[1]s/queue
data_directory = %[1]s/data
mail_owner = postfix
setgid_group = postdrop
myhostname = mx.outside.test
mydomain = outside.test
myorigin = outside.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
transport_maps = texthash:%[1]s/etc/transport
smtp_dns_support_level = disabled
maillog_file_prefixes = %[1]s
maillog_file = %[1]s/maillog
alias_maps =
alias_database =
smtpd_peername_lookup = no
smtp_tls_security_level = may
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
bounce_queue_lifetime = 0
%[2]s
`, dir, strings.ReplaceAll(extra, "@DIR@", dir))
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(dir, "etc", name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("main.cf", main)
	write("transport", transport)
	for name, text := range files {
		write(name, text)
	}
	master, err := os.ReadFile("/etc/postfix/master.cf.proto")
	if err != nil {
		if master, err = os.ReadFile("/etc/postfix/master.cf"); err != nil {
			t.Fatal(err)
		}
	}
	var mc strings.Builder
	for _, line := range strings.Split(string(master), "\n") {
		switch {
		case strings.HasPrefix(line, "smtp ") && strings.Contains(line, " inet "):
			line = h.addr + " inet n - n - - smtpd"
		case strings.HasPrefix(line, "#postlog") || strings.HasPrefix(line, "postlog "):
			line = "postlog unix-dgram n - n - 1 postlogd"
		}
		mc.WriteString(line + "\n")
	}
	write("master.cf", mc.String())
	if out, err := exec.Command("postfix", "-c", filepath.Join(dir, "etc"), "start").CombinedOutput(); err != nil {
		log, _ := os.ReadFile(h.log)
		t.Fatalf("postfix start: %v: %s\n%s", err, out, log)
	}
	t.Cleanup(func() { exec.Command("postfix", "-c", filepath.Join(dir, "etc"), "stop").Run() })
	for i := 0; i < 200; i++ {
		if c, err := net.Dial("tcp", h.addr); err == nil {
			c.Close()
			return h
		}
		time.Sleep(25 * time.Millisecond)
	}
	log, _ := os.ReadFile(h.log)
	t.Fatalf("postfix did not listen on %s:\n%s", h.addr, log)
	return nil
}

func postfixUID(t *testing.T) int {
	out, err := exec.Command("id", "-u", "postfix").Output()
	if err != nil {
		t.Fatal("no user postfix: run tests/deps.sh")
	}
	uid, _ := strconv.Atoi(strings.TrimSpace(string(out)))
	return uid
}

// status waits for postfix's log to say what became of the mail to rcpt
// (status=sent, bounced, deferred) and returns that line.
func (h *postfixHost) status(t *testing.T, rcpt, want string) string {
	t.Helper()
	var line string
	await(t, 30*time.Second, "postfix: "+rcpt+" "+want, func() bool {
		b, _ := os.ReadFile(h.log)
		for _, l := range strings.Split(string(b), "\n") {
			if strings.Contains(l, "to=<"+rcpt+">") && strings.Contains(l, "status="+want) {
				line = l
				return true
			}
		}
		return false
	})
	return line
}

// send gives postfix a message over SMTP, as the outside world does.
func (h *postfixHost) send(t *testing.T, from string, to []string, msg string) {
	t.Helper()
	host, port, _ := net.SplitHostPort(h.addr)
	file := filepath.Join(t.TempDir(), "msg.eml")
	os.WriteFile(file, []byte(msg), 0o644)
	out, err := exec.Command("swaks", "--server", host, "--port", port, "--from", from, "--to", strings.Join(to, ","), "--data", "@"+file).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "250 2.0.0 Ok: queued") {
		t.Fatalf("swaks to postfix: %v\n%s", err, out)
	}
}
