package tests

import (
	"encoding/binary"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"im2000/lib/session"
	"im2000/lib/wire"
	"im2000/lib/wire/rnasp"
)

// mountTmpfs mounts a tmpfs of the given size on dir for the test. It
// needs root; CI runs as root.
func mountTmpfs(t *testing.T, dir, size string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root (CI runs as root)")
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if exec.Command("umount", dir).Run() != nil {
			exec.Command("umount", "-l", dir).Run()
		}
	})
}

// floodAgent is im2000-agentd alone on a spool, with the given settings.
func floodAgent(t *testing.T, mode string, tmpfs bool, settings map[string]string, accounts ...string) (addr, spool string, logs *syncBuffer) {
	e := newEnv(t, "bob")
	e.setConf("me", "example.net")
	for k, v := range settings {
		e.setConf(k, v)
	}
	spool = filepath.Join(t.TempDir(), "agent")
	os.Mkdir(spool, 0o755)
	if tmpfs {
		mountTmpfs(t, spool, "2m") // before the daemon: unmounted after it stops
	}
	for _, a := range accounts {
		os.Mkdir(filepath.Join(spool, a), 0o700)
	}
	vars := append(e.vars, "IM2000_AGENT="+spool)
	port := strconv.Itoa(freePort(t))
	addr = "127.0.0.1:" + port
	if mode == "tcpserver" {
		tcpserver, err := exec.LookPath("tcpserver")
		if err != nil {
			t.Fatal("tcpserver (ucspi-tcp) is not installed: run tests/deps.sh")
		}
		_, logs = daemonEnv(t, vars, addr, tcpserver, "-RHl0", "-c200", "127.0.0.1", port, filepath.Join(bin, "im2000-agentd"))
	} else {
		_, logs = daemonEnv(t, vars, addr, filepath.Join(bin, "im2000-agentd"), "-l", addr, "-c", "200")
	}
	return addr, spool, logs
}

// dialFrom connects to addr from the local address src (any 127/8
// address is this host's).
func dialFrom(t *testing.T, src, addr string) *session.Client {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 10 * time.Second}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := session.NewClient(conn, rnasp.Protocol, 60*time.Second)
	t.Cleanup(func() { c.Close() })
	return c
}

// junkBatch is n notifications for local@example.net with identifiers
// unique to (tag, first+i).
func junkBatch(local string, tag byte, first, n int) *rnasp.Notify {
	cmd := &rnasp.Notify{}
	for i := range n {
		var id [16]byte
		id[0] = tag
		binary.BigEndian.PutUint64(id[8:], uint64(first+i))
		cmd.Notifications = append(cmd.Notifications, rnasp.Notification{
			StoreClear: wire.ServiceLocation{Domain: wire.DomainName{"junk", "example", "org"}},
			Recipient:  mb(local, "example.net"), ID: id, Sender: "junk@example.org"})
	}
	return cmd
}

// notifyAll sends one Notify and returns one result per notification.
// Anything but a NotifyOK (errorinternalproblem included) fails the test.
func notifyAll(t *testing.T, c *session.Client, cmd *rnasp.Notify) []uint64 {
	r, err := session.Expect[*rnasp.NotifyOK](c, cmd)
	if err != nil {
		t.Errorf("Notify of %d: %v", len(cmd.Notifications), err)
		return nil
	}
	if len(r.Results) == 0 { // absent: all accepted
		return make([]uint64, len(cmd.Notifications))
	}
	return r.Results
}

func spoolFiles(t *testing.T, dir string) int {
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// flood sends total junk notifications for local from src over conns
// connections at once, in Notify PDUs of 1,000 as notifyd batches them,
// and returns how many were accepted and how many full. during is called
// once a tenth of the PDUs have been answered, while the rest go on; flood
// returns when both are done.
func flood(t *testing.T, addr, src, local string, total, conns int, during func()) (accepted, full int64) {
	const batch = 1000
	var wg sync.WaitGroup
	var answered, acc, fl atomic.Int64
	pdus := total / batch
	for w := range conns {
		c := dialFrom(t, src, addr)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := w; p < pdus; p += conns {
				for _, r := range notifyAll(t, c, junkBatch(local, 0xee, p*batch, batch)) {
					switch r {
					case rnasp.Accepted:
						acc.Add(1)
					case rnasp.Full:
						fl.Add(1)
					default:
						t.Errorf("a junk notification answered %d", r)
					}
				}
				if answered.Add(1) == int64(max(pdus/10, 1)) && during != nil {
					wg.Add(1)
					go func() { defer wg.Done(); during() }()
				}
			}
		}()
	}
	wg.Wait()
	return acc.Load(), fl.Load()
}

// overRateLine and spoolFullLine are im2000-agentd's lines for a flood
// (im2000-agentd(8), LOGS).
var (
	overRateLine  = regexp.MustCompile(`(?m)^im2000-agentd: warning: over rate: 127\.0\.0\.1:\d+: 127\.0\.0\.1: \d+ notifications answered full$`)
	spoolFullLine = regexp.MustCompile(`(?m)^im2000-agentd: warning: spool full: 127\.0\.0\.[0-9]+:\d+: bob: spool or disk full, \d+ notifications answered full$`)
)

// TestAgentFlood: 100,000 junk notifications for bob from 127.0.0.1, over
// four connections at once (four agentd processes under tcpserver, sharing
// the counters and the rate bucket through their files). bob's spool stops
// exactly at the quota, the rest are full (never errorinternalproblem),
// and alice's notification from 127.0.0.2 in the middle of it is accepted.
// 127.0.0.3 still gets half a quota more for bob, and no further.
// Then 127.0.0.1 is over its rate: a notification for carol (an empty
// spool) from it is full, and the same from 127.0.0.3 accepted.
func TestAgentFlood(t *testing.T) {
	for _, mode := range []string{"tcpserver", "listener"} {
		t.Run(mode, func(t *testing.T) {
			const quota = 3000
			addr, spool, logs := floodAgent(t, mode, false, map[string]string{"agentquota": strconv.Itoa(quota), "agentrate": "60", "agentburst": "10000"}, "bob", "alice", "carol")
			// One notification bob had before the flood, re-sent after it.
			if r := notifyAll(t, dialFrom(t, "127.0.0.4", addr), junkBatch("bob", 5, 0, 1)); len(r) != 1 || r[0] != rnasp.Accepted {
				t.Fatalf("bob's first notification: %v", r)
			}
			var aliceGot []uint64
			start := time.Now()
			accepted, full := flood(t, addr, "127.0.0.1", "bob", 100000, 4, func() {
				aliceGot = notifyAll(t, dialFrom(t, "127.0.0.2", addr), junkBatch("alice", 1, 0, 1))
			})
			t.Logf("%s: 100,000 notifications in %v: %d accepted, %d full", mode, time.Since(start), accepted, full)
			if accepted != quota-1 || full != 100000-quota+1 {
				t.Errorf("%d accepted and %d full, want %d and %d", accepted, full, quota-1, 100000-quota+1)
			}
			if n := spoolFiles(t, filepath.Join(spool, "bob")); n != quota {
				t.Errorf("bob's spool holds %d notifications, want the quota, %d", n, quota)
			}
			// Past the quota, another address still gets half of it more
			// (and no further): one address's flood does not shut 127.0.0.3
			// out.
			acc3 := 0
			c3 := dialFrom(t, "127.0.0.3", addr)
			for p := range 2 {
				for _, r := range notifyAll(t, c3, junkBatch("bob", 6, p*1000, 1000)) {
					if r == rnasp.Accepted {
						acc3++
					}
				}
			}
			if n := spoolFiles(t, filepath.Join(spool, "bob")); acc3 != quota/2 || n != quota+quota/2 {
				t.Errorf("from 127.0.0.3, %d accepted, bob holds %d; want %d and %d", acc3, n, quota/2, quota+quota/2)
			}
			if len(aliceGot) != 1 || aliceGot[0] != rnasp.Accepted || spoolFiles(t, filepath.Join(spool, "alice")) != 1 {
				t.Errorf("alice's notification during the flood: %v", aliceGot)
			}
			// The flood used 127.0.0.1's whole burst, and a token a second
			// comes back: a thousand for carol, whose spool is empty, are
			// full but for the few that came back meanwhile.
			kept := 0
			for _, r := range notifyAll(t, dialFrom(t, "127.0.0.1", addr), junkBatch("carol", 2, 0, 1000)) {
				if r == rnasp.Accepted {
					kept++
				}
			}
			if kept > 100 {
				t.Errorf("%d of 1,000 notifications for carol from the flooding address accepted, want full (its rate)", kept)
			}
			if r := notifyAll(t, dialFrom(t, "127.0.0.3", addr), junkBatch("carol", 3, 0, 1)); len(r) != 1 || r[0] != rnasp.Accepted || spoolFiles(t, filepath.Join(spool, "carol")) != kept+1 {
				t.Errorf("carol's notification from 127.0.0.3: %v, want accepted", r)
			}
			// A re-send of what bob holds is still accepted, and costs no
			// token.
			if r := notifyAll(t, dialFrom(t, "127.0.0.1", addr), junkBatch("bob", 5, 0, 1)); len(r) != 1 || r[0] != rnasp.Accepted {
				t.Errorf("a re-send from the flooding address: %v, want accepted", r)
			}
			await(t, 5*time.Second, "agentd's log lines", func() bool {
				return overRateLine.MatchString(logs.String()) && spoolFullLine.MatchString(logs.String())
			})
		})
	}
}

// TestAgentNoTCPREMOTEIP: agentd run on the accepted socket without
// TCPREMOTEIP (as inetd and systemd's Accept=yes run it) takes the peer's
// address from the socket: 127.0.0.1 spending its burst leaves
// 127.0.0.2's bucket whole.
func TestAgentNoTCPREMOTEIP(t *testing.T) {
	e := newEnv(t, "bob")
	e.setConf("me", "example.net")
	e.setConf("agentburst", "1000")
	e.setConf("agentrate", "1")
	spool := filepath.Join(t.TempDir(), "agent")
	os.Mkdir(spool, 0o755)
	for _, a := range []string{"bob", "alice"} {
		os.Mkdir(filepath.Join(spool, a), 0o700)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	var wg sync.WaitGroup
	// After the clients' cleanups (registered later, run earlier), which
	// end the sessions.
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f, err := c.(*net.TCPConn).File()
			c.Close()
			if err != nil {
				t.Error(err)
				return
			}
			cmd := exec.Command(filepath.Join(bin, "im2000-agentd"))
			cmd.Env = append(e.vars, "IM2000_AGENT="+spool) // no TCPREMOTEIP
			cmd.Stdin, cmd.Stdout, cmd.Stderr = f, f, &logs
			err = cmd.Start()
			f.Close()
			if err != nil {
				t.Error(err)
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); cmd.Wait() }()
		}
	}()
	addr := ln.Addr().String()
	acc, full := flood(t, addr, "127.0.0.1", "bob", 2000, 1, nil)
	r := notifyAll(t, dialFrom(t, "127.0.0.2", addr), junkBatch("alice", 1, 0, 1))
	if acc > 1010 || full < 990 || len(r) != 1 || r[0] != rnasp.Accepted {
		t.Errorf("127.0.0.1: %d accepted, %d full (burst 1000); then alice's from 127.0.0.2: %v, want accepted", acc, full, r)
	}
	// The log comes through a pipe: wait for it.
	await(t, 5*time.Second, "agentd's log line for 127.0.0.2", func() bool { return strings.Contains(logs.String(), "127.0.0.2:") })
	if l := logs.String(); strings.Contains(l, "no remote address") || strings.Contains(l, "alert:") {
		t.Errorf("agentd's log does not name the peers: %s", l[:min(len(l), 2000)])
	}
	// On a pipe, with no address at all, it says that every such session
	// shares one.
	cmd := exec.Command(filepath.Join(bin, "im2000-agentd"))
	cmd.Env = append(e.vars, "IM2000_AGENT="+spool)
	cmd.Stdin = strings.NewReader("")
	out, _ := cmd.CombinedOutput()
	if !strings.Contains(string(out), "warning: no remote address: RNASP") {
		t.Errorf("agentd on a pipe without TCPREMOTEIP logged %q, want the line saying it has no remote address", out)
	}
}
