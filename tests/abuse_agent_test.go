package tests

import (
	"encoding/binary"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

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

// TestAgentFlood: 100,000 junk notifications for bob from 127.0.0.1, over
// four connections at once (four agentd processes under tcpserver, sharing
// the counter and the rate bucket through their files). bob's spool stops
// exactly at the quota, the rest are full (never errorinternalproblem),
// and alice's notification from 127.0.0.2 in the middle of it is accepted.
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
				return strings.Contains(logs.String(), "over the rate of 4-127.0.0.1") && strings.Contains(logs.String(), "bob: spool or disk full")
			})
		})
	}
}

// TestAgentFloodTmpfs: the same flood with the spool on a 2 MiB tmpfs and
// no rate limit, so that only the disk stops it: bob stops when he holds
// what is left above the reserve, every answer is accepted or full (a
// full disk is never errorinternalproblem), the reserve stays free, and
// alice's notification from 127.0.0.2, during the flood and after it, is
// accepted. Then carol floods too, and alice still gets hers.
func TestAgentFloodTmpfs(t *testing.T) {
	const reserve = 512 << 10
	addr, spool, _ := floodAgent(t, "tcpserver", true, map[string]string{"agentrate": "0", "agentreserve": strconv.Itoa(reserve)}, "bob", "alice", "carol")
	free := func() int64 {
		var st unix.Statfs_t
		if err := unix.Statfs(spool, &st); err != nil {
			t.Fatal(err)
		}
		return int64(st.Bavail) * int64(st.Bsize)
	}
	var aliceGot []uint64
	accepted, full := flood(t, addr, "127.0.0.1", "bob", 100000, 4, func() {
		aliceGot = notifyAll(t, dialFrom(t, "127.0.0.2", addr), junkBatch("alice", 1, 0, 1))
	})
	t.Logf("tmpfs: %d accepted, %d full; %d octets free", accepted, full, free())
	if accepted == 0 || accepted+full != 100000 || free() < reserve {
		t.Errorf("%d accepted, %d full, %d octets free (reserve %d)", accepted, full, free(), reserve)
	}
	if len(aliceGot) != 1 || aliceGot[0] != rnasp.Accepted {
		t.Errorf("alice's notification during the flood: %v", aliceGot)
	}
	flood(t, addr, "127.0.0.3", "carol", 10000, 2, nil)
	for i := byte(2); i < 4; i++ {
		if r := notifyAll(t, dialFrom(t, "127.0.0.2", addr), junkBatch("alice", i, 0, 1)); len(r) != 1 || r[0] != rnasp.Accepted {
			t.Errorf("alice's notification %d after the floods: %v", i, r)
		}
	}
	if free() < reserve || spoolFiles(t, filepath.Join(spool, "alice")) != 3 {
		t.Errorf("%d octets free, alice holds %d", free(), spoolFiles(t, filepath.Join(spool, "alice")))
	}
}
