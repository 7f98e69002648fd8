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
// the counters and the rate bucket through their files). bob's spool stops
// exactly at the quota, the rest are full (never errorinternalproblem),
// and alice's notification from 127.0.0.2 in the middle of it is accepted.
// 127.0.0.3 still gets half a quota more for bob, and no further.
// Then 127.0.0.1 is over its rate: a notification for carol (an empty
// agentd's lines for a flood (im2000-agentd(8), LOGS).
var (
	overRateLine  = regexp.MustCompile(`(?m)^im2000-agentd: warning: over rate: 127\.0\.0\.1:\d+: 127\.0\.0\.1: \d+ notifications answered full$`)
	spoolFullLine = regexp.MustCompile(`(?m)^im2000-agentd: warning: spool full: 127\.0\.0\.[0-9]+:\d+: bob: spool or disk full, \d+ notifications answered full$`)
)

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

// freeSpace is what statfs says is free for anyone on dir's filesystem:
// octets and inodes.
func freeSpace(t *testing.T, dir string) (octets, inodes int64) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * int64(st.Bsize), int64(st.Ffree)
}

// TestAgentFloodManyRecipients: one address, well within its rate (the
// default burst, 10,000), floods ten recipients one after another on a
// 2 MiB tmpfs. Each recipient's share of the disk alone would let it halve
// what is left ten times over; the address's own share stops it at about
// half, and alice's notification from 127.0.0.2 is accepted.
func TestAgentFloodManyRecipients(t *testing.T) {
	const reserve = 512 << 10
	var victims []string
	for i := range 10 {
		victims = append(victims, "v"+strconv.Itoa(i))
	}
	addr, spool, _ := floodAgent(t, "tcpserver", true, map[string]string{"agentreserve": strconv.Itoa(reserve)}, append([]string{"alice"}, victims...)...)
	before, _ := freeSpace(t, spool)
	total := int64(0)
	for _, v := range victims {
		acc, _ := flood(t, addr, "127.0.0.1", v, 1000, 1, nil)
		total += acc
	}
	after, _ := freeSpace(t, spool)
	t.Logf("127.0.0.1 had %d notifications kept for 10 recipients; %d octets free above the reserve before, %d after", total, before-reserve, after-reserve)
	// About half: less the counters' own files (a block each, for each
	// recipient's count and the address's share of it).
	if total == 0 || after-reserve < (before-reserve)/2-4096*int64(len(victims)+2) {
		t.Errorf("one address took %d of the %d octets above the reserve, want at most about half", before-after, before-reserve)
	}
	r := notifyAll(t, dialFrom(t, "127.0.0.2", addr), junkBatch("alice", 1, 0, 1))
	if len(r) != 1 || r[0] != rnasp.Accepted {
		t.Errorf("alice's notification from 127.0.0.2 after one address flooded %d recipients: %v, want accepted", len(victims), r)
	}
}

// TestAgentFloodInodes: on a tmpfs of 600 inodes with agentreserveinodes
// 100, bob's flood (far within his count quota) leaves the inode reserve
// free, and alice's notification from another address is accepted: inodes
// are counted per file written and shared out like octets.
func TestAgentFloodInodes(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root (CI runs as root)")
	}
	e := newEnv(t, "bob")
	e.setConf("me", "example.net")
	e.setConf("agentreserve", "0")
	e.setConf("agentreserveinodes", "100")
	spool := filepath.Join(t.TempDir(), "agent")
	os.Mkdir(spool, 0o755)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64m,nr_inodes=600", "tmpfs", spool).CombinedOutput(); err != nil {
		t.Fatalf("mount: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if exec.Command("umount", spool).Run() != nil {
			exec.Command("umount", "-l", spool).Run()
		}
	})
	for _, a := range []string{"bob", "alice"} {
		os.Mkdir(filepath.Join(spool, a), 0o700)
	}
	addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	daemonEnv(t, append(e.vars, "IM2000_AGENT="+spool), addr, filepath.Join(bin, "im2000-agentd"), "-l", addr, "-c", "200")
	acc, full := flood(t, addr, "127.0.0.1", "bob", 1000, 1, nil)
	_, inodes := freeSpace(t, spool)
	t.Logf("bob: %d accepted, %d full; %d inodes free, agentreserveinodes 100", acc, full, inodes)
	if acc == 0 || inodes < 100 {
		t.Errorf("bob's flood: %d accepted, %d inodes left free, want some kept and at least the reserve, 100", acc, inodes)
	}
	r := notifyAll(t, dialFrom(t, "127.0.0.2", addr), junkBatch("alice", 1, 0, 1))
	if len(r) != 1 || r[0] != rnasp.Accepted {
		t.Errorf("alice's notification after bob's flood took the inodes: %v, want accepted", r)
	}
}

// TestAgentFloodParallel: eight recipients flooded at once from eight
// addresses (eight agentd processes under tcpserver, each asking statfs
// before each write, and taking turns near the reserve) leave the reserve
// free, give or take one notification's block. (Eight addresses flooding
// at once may leave too little for a ninth: the promise is about one.)
func TestAgentFloodParallel(t *testing.T) {
	const reserve = 512 << 10
	var victims []string
	for i := range 8 {
		victims = append(victims, "p"+strconv.Itoa(i))
	}
	addr, spool, _ := floodAgent(t, "tcpserver", true, map[string]string{"agentreserve": strconv.Itoa(reserve), "sessionsperaddr": "0"}, append([]string{"alice"}, victims...)...)
	var wg sync.WaitGroup
	var total atomic.Int64
	for i, v := range victims {
		wg.Add(1)
		go func() {
			defer wg.Done()
			acc, _ := flood(t, addr, "127.0.1."+strconv.Itoa(i+1), v, 3000, 1, nil)
			total.Add(acc)
		}()
	}
	wg.Wait()
	free, _ := freeSpace(t, spool)
	t.Logf("8 recipients flooded at once: %d kept, %d octets free, agentreserve %d", total.Load(), free, reserve)
	if total.Load() == 0 || free < reserve-4096 {
		t.Errorf("%d kept, %d octets free: below agentreserve (%d) by more than one notification's block", total.Load(), free, reserve)
	}
}

// TestAgentQuotaBytes: agentquotabytes, seen from outside: one address
// floods bob, and the octets of his notifications stop at the quota, no
// more and not a notification short; another address then gets half of it
// more, and no further.
func TestAgentQuotaBytes(t *testing.T) {
	const quota = 20000
	addr, spool, _ := floodAgent(t, "listener", false, map[string]string{"agentquotabytes": strconv.Itoa(quota)}, "bob")
	held := func() (n, octets int64) {
		ents, err := os.ReadDir(filepath.Join(spool, "bob"))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			fi, err := e.Info()
			if err != nil {
				t.Fatal(err)
			}
			n, octets = n+1, octets+fi.Size()
		}
		return n, octets
	}
	acc1, _ := flood(t, addr, "127.0.0.1", "bob", 1000, 1, nil)
	n1, octets := held()
	size := octets / n1
	if acc1 != n1 || octets > quota || quota-octets >= size {
		t.Errorf("from one address: %d kept, %d octets; want the quota, %d, within one notification (%d)", n1, octets, quota, size)
	}
	if r := notifyAll(t, dialFrom(t, "127.0.0.2", addr), junkBatch("bob", 2, 0, 1000)); len(r) != 1000 {
		t.Fatalf("%d results", len(r))
	}
	_, after := held()
	t.Logf("bob holds %d octets from one address, %d with another's; agentquotabytes %d, notifications of %d octets", octets, after, quota, size)
	if after-octets > quota/2 || quota/2-(after-octets) >= size {
		t.Errorf("another address added %d octets past the quota, want half of it, %d, within one notification (%d)", after-octets, quota/2, size)
	}
}

// TestAgentAddrQuota: agentaddrquota counts what one address has kept
// across recipients; another address is not affected.
func TestAgentAddrQuota(t *testing.T) {
	addr, spool, _ := floodAgent(t, "tcpserver", false, map[string]string{"agentaddrquota": "50"}, "bob", "carol", "alice")
	acc, _ := flood(t, addr, "127.0.0.1", "bob", 1000, 1, nil)
	r := notifyAll(t, dialFrom(t, "127.0.0.1", addr), junkBatch("carol", 2, 0, 10))
	if acc != 50 || spoolFiles(t, filepath.Join(spool, "carol")) != 0 || len(r) != 10 || r[0] != rnasp.Full {
		t.Errorf("127.0.0.1 had %d kept for bob and %d for carol, want 50 in all", acc, spoolFiles(t, filepath.Join(spool, "carol")))
	}
	if r := notifyAll(t, dialFrom(t, "127.0.0.2", addr), junkBatch("alice", 1, 0, 1)); len(r) != 1 || r[0] != rnasp.Accepted {
		t.Errorf("alice's notification from 127.0.0.2: %v, want accepted", r)
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
