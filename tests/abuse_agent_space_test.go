// im2000-agentd flooded until the disk or a quota stops it: the spool on a
// small tmpfs (octets and inodes, one recipient, many, many at once), and
// agentquotabytes and agentaddrquota seen from outside.

package tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"

	"im2000/lib/wire/rnasp"
)

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
