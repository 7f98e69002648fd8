package main

// The queue section (issue 13): im2000-notifyd's in-memory schedule at
// scale. Commit-to-agent latency and notifyd's CPU per new message with
// 0, 10,000 and 100,000 messages already queued awaiting silence; the same
// latency while another destination is a tarpit; notifyd's resident memory
// with 1,000,000 queued recipients.
//
// The queued messages are committed through lib/store, then marked
// notifying with their next attempt an hour away (Account.Update) and
// moved to queue/ (Account.Take), as notifyd itself leaves them once an
// agent has taken the notification. For speed they are committed on a
// tmpfs and copied onto the disk (commits there run at ~300/s, however
// many at once). They are made once and reused: an account directory is
// hidden from notifyd between runs by renaming it to a dot name, which is
// not an account name. notifyd is started afresh for every run, so every
// run also measures its start-up rebuild from queue/.

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"im2000/lib/addr"
	"im2000/lib/agent"
	"im2000/lib/store"
	"im2000/lib/wire"
	"im2000/lib/wire/rnaqp"
	"im2000/lib/wire/rnasp"
)

var (
	queuedFlag  = flag.String("queued", "0,10000,100000", "queue: messages already queued awaiting silence, per configuration")
	qmsgsFlag   = flag.Int("qmsgs", 1000, "queue: messages committed one after another per run")
	qroundsFlag = flag.Int("qrounds", 3, "queue: interleaved rounds of every configuration; medians are reported")
	qrcptsFlag  = flag.Int("qrcpts", 1000000, "queue: queued recipients for the memory measurement (messages of 1,000 recipients); 0 skips it")
)

// spoolWatch reports the notification files as they appear in one agent
// account's spool directory (agentd renames each into place), with the
// time inotify told of it.
type spoolWatch struct {
	ev chan spoolEvent
}

type spoolEvent struct {
	name string
	t    time.Time
}

func watchSpool(dir string) *spoolWatch {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC)
	must(err)
	_, err = unix.InotifyAddWatch(fd, dir, unix.IN_MOVED_TO|unix.IN_CREATE)
	must(err)
	w := &spoolWatch{ev: make(chan spoolEvent, 1<<16)}
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, err := unix.Read(fd, buf)
			t := time.Now()
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				log("inotify: %v", err)
				os.Exit(111)
			}
			for off := 0; off+unix.SizeofInotifyEvent <= n; {
				e := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
				name := buf[off+unix.SizeofInotifyEvent : off+unix.SizeofInotifyEvent+int(e.Len)]
				w.ev <- spoolEvent{string(bytes.TrimRight(name, "\x00")), t}
				off += unix.SizeofInotifyEvent + int(e.Len)
			}
		}
	}()
	return w
}

// wait returns when the file name appeared, or false after limit.
func (w *spoolWatch) wait(name string, limit time.Duration) (time.Time, bool) {
	timer := time.NewTimer(limit)
	defer timer.Stop()
	for {
		select {
		case e := <-w.ev:
			if e.name == name {
				return e.t, true
			}
		case <-timer.C:
			return time.Time{}, false
		}
	}
}

func (w *spoolWatch) drain() {
	for {
		select {
		case <-w.ev:
		default:
			return
		}
	}
}

// procCPU is a process's user+system CPU time so far.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	must(err)
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / 100 // USER_HZ
}

// settle waits until a process has used no CPU for half a second: at
// start notifyd also cleans the store (it reads every entry of rcpt/,
// which here holds the links of every queued message, hidden or not),
// and that once-an-hour work is not a new message's cost.
func settle(pid int) {
	for start := time.Now(); time.Since(start) < time.Minute; {
		c := procCPU(pid)
		time.Sleep(500 * time.Millisecond)
		if procCPU(pid) == c {
			return
		}
	}
}

// procMem is a process's VmRSS and VmHWM in bytes.
func procMem(pid int) (rss, hwm int64) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	must(err)
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		fs := strings.Fields(s.Text())
		if len(fs) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(fs[1], 10, 64)
		switch fs[0] {
		case "VmRSS:":
			rss = kb << 10
		case "VmHWM:":
			hwm = kb << 10
		}
	}
	return rss, hwm
}

// tarpit accepts connections and never answers.
type tarpit struct {
	l     net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func startTarpit() *tarpit {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(err)
	t := &tarpit{l: l}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			t.mu.Lock()
			t.conns = append(t.conns, c)
			t.mu.Unlock()
		}
	}()
	return t
}

func (t *tarpit) accepted() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.conns)
}

func (t *tarpit) close() {
	t.l.Close()
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, c := range t.conns {
		c.Close()
	}
}

type queueBench struct {
	tmp, bin        string
	fast            string // a directory on a tmpfs, or ""
	confDir         string
	spool           string // the agent's spool directory of bob
	watch           *spoolWatch
	loc             wire.ServiceLocation
	from, bob, trap addr.Mailbox
	runs            int
}

// run is one life of notifyd on a store: its start-up, then msgs messages
// committed one after another to bob, each measured from the start of its
// commit and from its return to its file in bob's spool.
type run struct {
	rebuild, rebuildCPU time.Duration
	fromStart, fromRet  []time.Duration
	cpu                 time.Duration // notifyd's, for the messages
	rss, hwm            int64         // after them
	trapConns           int
	alerts              int
}

// tarpit modes of a run.
const (
	noTarpit     = iota
	trapMessages // a message to the tarpit's domain before each measured one
	trapRcpt     // each measured message also to a recipient at the tarpit
)

// show makes exactly the named accounts of the store visible to notifyd.
func show(storeDir string, names ...string) {
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	ents, err := os.ReadDir(storeDir)
	must(err)
	for _, e := range ents {
		if !e.IsDir() || e.Name() == "rcpt" || e.Name() == "lists" {
			continue
		}
		name := strings.TrimPrefix(e.Name(), ".")
		hidden := name != e.Name()
		switch {
		case want[name] && hidden:
			must(os.Rename(filepath.Join(storeDir, e.Name()), filepath.Join(storeDir, name)))
		case !want[name] && !hidden:
			must(os.Rename(filepath.Join(storeDir, name), filepath.Join(storeDir, "."+name)))
		}
	}
}

// commit commits one small message.
func commit(a *store.Account, from addr.Mailbox, rcpts []addr.Mailbox, i int) *store.Envelope {
	d, err := a.NewDraft(store.Submission{Sender: from, Lifetime: 24 * time.Hour, Recipients: rcpts}, store.Limits{})
	must(err)
	fmt.Fprintf(d, "Subject: %d\r\n\r\nx\r\n", i)
	env, err := d.Commit()
	must(err)
	return env
}

// fill commits n messages to account name, each to the recipients rcpts
// gives, and leaves them as notifyd leaves a message whose recipients'
// agents have all taken the notification: every recipient notifying, next
// attempt an hour away, the message in queue/. Several committers at once,
// as the store's own services commit.
func (b *queueBench) fill(st *store.Store, name string, n int, rcpts func(i int) []addr.Mailbox) {
	a, err := st.Account(name)
	must(err)
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				env := commit(a, b.from, rcpts(i), i)
				now := time.Now()
				must(a.Update(env.ID, func(_ *store.Envelope, s *store.Status) error {
					for j := range s.Recipients {
						r := &s.Recipients[j]
						r.Notification, r.Attempts, r.Last, r.Next = store.Notifying, 1, now, now.Add(time.Hour)
					}
					return nil
				}))
				must(a.Take(env.ID))
				if i%10000 == 9999 {
					log("%s: %d of %d queued", name, i+1, n)
				}
			}
		}()
	}
	wg.Wait()
	must(a.SyncQueue())
	log("%s: %d messages queued in %v (%.0f/s)", name, n, time.Since(start).Round(time.Millisecond), float64(n)/time.Since(start).Seconds())
}

// key is the name of a notification's file in bob's spool.
func (b *queueBench) key(env *store.Envelope) string {
	return agent.Key(&rnaqp.NotificationAndLocalData{Notification: rnasp.Notification{StoreClear: b.loc, ID: env.Recipients[0].ID}})
}

// start starts notifyd on storeDir, in which the probe account has one
// message committed to bob just before: its arrival ends the start-up
// rebuild, as notifyd reads queue/ and todo/ account by account in order
// of name and the probe's name sorts last.
func (b *queueBench) start(storeDir string) (*exec.Cmd, *os.File, *store.Store, time.Duration, time.Duration) {
	st, err := store.Open(storeDir)
	must(err)
	probe, err := st.Account(fmt.Sprintf("zzprobe%03d", b.runs))
	must(err)
	env := commit(probe, b.from, []addr.Mailbox{b.bob}, 0)
	b.watch.drain()
	logf, err := os.Create(filepath.Join(b.tmp, fmt.Sprintf("notifyd%03d.log", b.runs)))
	must(err)
	nd := exec.Command(filepath.Join(b.bin, "im2000-notifyd"))
	nd.Env = append(os.Environ(), "IM2000_CONF="+b.confDir, "IM2000_STORE="+storeDir)
	nd.Stderr = logf
	begin := time.Now()
	must(nd.Start())
	t, ok := b.watch.wait(b.key(env), 10*time.Minute)
	if !ok {
		log("notifyd's start-up: the probe never arrived")
		os.Exit(111)
	}
	return nd, logf, st, t.Sub(begin), procCPU(nd.Process.Pid)
}

func (b *queueBench) stop(nd *exec.Cmd, logf *os.File) (alerts int) {
	nd.Process.Kill()
	nd.Wait()
	logf.Close()
	out, _ := os.ReadFile(logf.Name())
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, "alert") || strings.Contains(l, "panic") {
			log("notifyd: %s", l)
			alerts++
		}
	}
	return alerts
}

// measure is one run on the latency store with the given accounts of
// queued messages visible.
func (b *queueBench) measure(storeDir string, queued []string, mode int, trap *tarpit) run {
	b.runs++
	meas := fmt.Sprintf("m%03d", b.runs)
	traps := fmt.Sprintf("t%03d", b.runs)
	show(storeDir, append(queued, meas, traps, fmt.Sprintf("zzprobe%03d", b.runs))...)
	// The agent's spool starts empty each run.
	ents, _ := os.ReadDir(b.spool)
	for _, e := range ents {
		os.Remove(filepath.Join(b.spool, e.Name()))
	}
	trapConns := trap.accepted()
	nd, logf, st, rebuild, rebuildCPU := b.start(storeDir)
	r := run{rebuild: rebuild, rebuildCPU: rebuildCPU}
	a, err := st.Account(meas)
	must(err)
	ta, err := st.Account(traps)
	must(err)
	pid := nd.Process.Pid
	settle(pid)
	cpu0 := procCPU(pid)
	for i := 0; i < *qmsgsFlag; i++ {
		rcpts := []addr.Mailbox{b.bob}
		switch mode {
		case trapMessages:
			commit(ta, b.from, []addr.Mailbox{b.trap}, i)
		case trapRcpt:
			rcpts = append(rcpts, b.trap)
		}
		t0 := time.Now()
		env := commit(a, b.from, rcpts, i)
		t1 := time.Now()
		t2, ok := b.watch.wait(b.key(env), 2*time.Minute)
		if !ok {
			log("message %d of run %d never arrived", i, b.runs)
			os.Exit(111)
		}
		r.fromStart = append(r.fromStart, t2.Sub(t0))
		r.fromRet = append(r.fromRet, t2.Sub(t1))
	}
	r.cpu = procCPU(pid) - cpu0
	r.rss, r.hwm = procMem(pid)
	r.trapConns = trap.accepted() - trapConns
	r.alerts = b.stop(nd, logf)
	show(storeDir) // hide everything again
	return r
}

// commas writes n with thousands separators.
func commas(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/1e6) }

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

func benchQueue() {
	var sizes []int
	for _, s := range strings.Split(*queuedFlag, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		must(err)
		sizes = append(sizes, n)
	}
	tmp, _ := os.MkdirTemp("/var/tmp", "im2000-bench-queue-")
	defer func() {
		log("removing %s", tmp)
		os.RemoveAll(tmp)
	}()
	bin, _ := filepath.Abs(*binDir)
	b := &queueBench{tmp: tmp, bin: bin, confDir: filepath.Join(tmp, "conf")}
	var fs unix.Statfs_t
	if unix.Statfs("/dev/shm", &fs) == nil && fs.Type == unix.TMPFS_MAGIC {
		b.fast, _ = os.MkdirTemp("/dev/shm", "im2000-bench-queue-")
		defer os.RemoveAll(b.fast)
	}
	b.from, _ = addr.Parse("alice@example.org")
	b.bob, _ = addr.Parse("bob@example.net")
	b.trap, _ = addr.Parse("carol@tarpit.example")

	agentDir := filepath.Join(tmp, "agent")
	agentAddr, stopAgent := startAgent(agentDir, "example.net", []string{"bob"})
	defer stopAgent()
	b.spool = filepath.Join(agentDir, "spool", "bob")
	b.watch = watchSpool(b.spool)
	trap := startTarpit()
	defer trap.close()
	location := "127.0.0.1:4002" // only carried in the notifications here
	var err error
	b.loc, err = netipLocation(location)
	must(err)
	must(os.MkdirAll(b.confDir, 0o755))
	must(os.WriteFile(filepath.Join(b.confDir, "storelocation"), []byte(location+"\n"), 0o644))
	must(os.WriteFile(filepath.Join(b.confDir, "routes"), []byte("_rnasp._tcp.example.net "+agentAddr+"\n_rnasp._tcp.tarpit.example "+trap.l.Addr().String()+"\n"), 0o644))

	// The queued messages: each size's accounts are the previous size's
	// and one more with the difference.
	storeDir := filepath.Join(tmp, "store")
	must(os.MkdirAll(storeDir, 0o755))
	// Committed on a tmpfs when there is one (fsync is free there; on this
	// disk commits do not go past ~300/s, even eight at once), then
	// copied onto the disk and synced once.
	fillDir := storeDir
	if fast := b.fast; fast != "" {
		fillDir = filepath.Join(fast, "store")
		must(os.MkdirAll(fillDir, 0o755))
	}
	st, err := store.Open(fillDir)
	must(err)
	accounts := map[int][]string{}
	made := 0
	var names []string
	for _, size := range sizes {
		if size > made {
			name := fmt.Sprintf("w%d", size)
			base := made
			b.fill(st, name, size-made, func(i int) []addr.Mailbox {
				a, _ := addr.Parse(fmt.Sprintf("w%d@example.net", base+i))
				return []addr.Mailbox{a}
			})
			names = append(names, name)
			made = size
		}
		accounts[size] = append([]string(nil), names...)
	}
	if fillDir != storeDir {
		start := time.Now()
		copyTree(fillDir, storeDir)
		must(os.RemoveAll(fillDir))
		log("copied the queued messages onto the disk in %v", time.Since(start).Round(time.Millisecond))
	}
	show(storeDir)

	// Interleaved rounds: every size and the tarpit runs.
	type config struct {
		name   string
		queued []string
		mode   int
		runs   []run
	}
	var configs []*config
	for _, size := range sizes {
		configs = append(configs, &config{name: commas(size), queued: accounts[size]})
	}
	trapConfigs := []*config{
		{name: "no tarpit (empty queue)", mode: noTarpit},
		{name: "tarpit: a message to tarpit.example before each", mode: trapMessages},
		{name: "tarpit: each message also to a recipient at tarpit.example", mode: trapRcpt},
	}
	all := append(append([]*config(nil), configs...), trapConfigs...)
	for round := 1; round <= *qroundsFlag; round++ {
		// Each round starts one configuration further on, so that none
		// always follows the same one (a restart after a long rebuild,
		// say).
		for k := range all {
			c := all[(k+round-1)%len(all)]
			r := b.measure(storeDir, c.queued, c.mode, trap)
			c.runs = append(c.runs, r)
			log("round %d, %s: start-up %v (CPU %v), median %v (from commit return %v), p99 %v, CPU %v per message, RSS %s",
				round, c.name, r.rebuild.Round(time.Millisecond), r.rebuildCPU, ms(percentile(r.fromStart, .5)), ms(percentile(r.fromRet, .5)),
				ms(percentile(r.fromStart, .99)), r.cpu/time.Duration(*qmsgsFlag), mib(r.rss))
		}
	}

	sum := func(c *config) figures { return summary(c.runs) }

	date := time.Now().UTC().Format("2006-01-02")
	fmt.Printf("\nCommit to notification file at the agent, %s messages committed one after another to one recipient, with messages already queued awaiting silence; %d rounds, medians of each round's figure (%s):\n\n",
		commas(*qmsgsFlag), *qroundsFlag, date)
	fmt.Println("| queued | start-up (rebuild): time, notifyd CPU | median from commit start | p99 | median from commit return | p99 | notifyd CPU per message | notifyd RSS after | median, p99, CPU vs empty | medians of the rounds (ms) |")
	fmt.Println("|---:|---:|---:|---:|---:|---:|---:|---:|---|---|")
	base := sum(configs[0])
	alerts := 0
	for _, c := range configs {
		f := sum(c)
		alerts += f.alerts
		fmt.Printf("| %s | %.2f s, %.2f s | %s | %s | %s | %s | %.0f µs | %s | %.2f× / %.2f× / %.2f× | %s |\n", c.name, f.rebuild.Seconds(), f.rebuildCPU.Seconds(), ms(f.med), ms(f.p99), ms(f.medRet), ms(f.p99Ret),
			float64(f.cpu)/1e3, mib(f.rss), float64(f.med)/float64(base.med), float64(f.p99)/float64(base.p99), float64(f.cpu)/float64(base.cpu), strings.Join(f.all, " "))
	}

	fmt.Printf("\nThe same latency to example.net while tarpit.example accepts connections and never answers (notifyd's timeout: the default 60 s), %d rounds (%s):\n\n", *qroundsFlag, date)
	fmt.Println("| what | median from commit start | p99 | median from commit return | p99 | vs no tarpit (median / p99) | tarpit sessions opened, all rounds | medians of the rounds (ms) |")
	fmt.Println("|---|---:|---:|---:|---:|---|---:|---|")
	tbase := sum(trapConfigs[0])
	for _, c := range trapConfigs {
		f := sum(c)
		alerts += f.alerts
		fmt.Printf("| %s | %s | %s | %s | %s | %.2f× / %.2f× | %d | %s |\n", c.name, ms(f.med), ms(f.p99), ms(f.medRet), ms(f.p99Ret),
			float64(f.med)/float64(tbase.med), float64(f.p99)/float64(tbase.p99), f.trapConns, strings.Join(f.all, " "))
	}
	if alerts > 0 {
		fmt.Printf("\nnotifyd logged %d alerts or panics (see above).\n", alerts)
	}

	if *qrcptsFlag > 0 {
		b.memory(*qrcptsFlag)
	}
}

// copyTree copies the store in src into dst, which exists, and makes it
// durable.
func copyTree(src, dst string) {
	if out, err := exec.Command("cp", "-a", src+"/.", dst).CombinedOutput(); err != nil {
		log("cp: %v: %s", err, out)
		os.Exit(111)
	}
	fd, err := unix.Open(dst, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	must(err)
	must(unix.Syncfs(fd))
	unix.Close(fd)
}

// figures are the medians over the rounds of each run's figures.
type figures struct {
	rebuild, rebuildCPU, med, p99, medRet, p99Ret, cpu time.Duration
	rss                                                int64
	all                                                []string
	alerts, trapConns                                  int
}

func summary(runs []run) figures {
	var f figures
	var rb, rc, md, p9, mr, pr, cp, rs []float64
	for _, r := range runs {
		rb = append(rb, float64(r.rebuild))
		rc = append(rc, float64(r.rebuildCPU))
		md = append(md, float64(percentile(r.fromStart, .5)))
		p9 = append(p9, float64(percentile(r.fromStart, .99)))
		mr = append(mr, float64(percentile(r.fromRet, .5)))
		pr = append(pr, float64(percentile(r.fromRet, .99)))
		cp = append(cp, float64(r.cpu)/float64(len(r.fromStart)))
		rs = append(rs, float64(r.rss))
		f.all = append(f.all, fmt.Sprintf("%.1f", float64(percentile(r.fromStart, .5))/1e6))
		f.alerts += r.alerts
		f.trapConns += r.trapConns
	}
	f.rebuild, f.rebuildCPU = time.Duration(median(rb)), time.Duration(median(rc))
	f.med, f.p99 = time.Duration(median(md)), time.Duration(median(p9))
	f.medRet, f.p99Ret, f.cpu, f.rss = time.Duration(median(mr)), time.Duration(median(pr)), time.Duration(median(cp)), int64(median(rs))
	return f
}

// memory measures notifyd's resident memory once its start-up rebuild
// has put n queued recipients (messages of 1,000 recipients spread over
// 100 domains, every one notifying, next attempt an hour away) into its
// schedule, and with nothing queued.
func (b *queueBench) memory(n int) {
	// On a tmpfs when there is one: its million recipient links would
	// take a while to write to the disk and to remove, and memory does
	// not depend on the disk.
	dir := b.tmp
	if b.fast != "" {
		dir = b.fast
	}
	storeDir := filepath.Join(dir, "store-memory")
	must(os.MkdirAll(storeDir, 0o755))
	type sample struct {
		rebuild, cpu, idleCPU time.Duration
		rss, idleRSS, hwm     int64
	}
	life := func() sample {
		b.runs++
		nd, logf, _, rebuild, cpu := b.start(storeDir)
		pid := nd.Process.Pid
		var s sample
		s.rebuild, s.cpu = rebuild, cpu
		s.rss, _ = procMem(pid)
		settle(pid)
		s.idleCPU = procCPU(pid)
		s.idleRSS, s.hwm = procMem(pid)
		if a := b.stop(nd, logf); a > 0 {
			fmt.Printf("\nnotifyd logged %d alerts or panics (see above).\n", a)
		}
		return s
	}
	empty := life()
	st, err := store.Open(storeDir)
	must(err)
	const per = 1000
	msgs := (n + per - 1) / per
	rcpts := make([]addr.Mailbox, per)
	for i := range rcpts {
		rcpts[i], _ = addr.Parse(fmt.Sprintf("u%02d@d%02d.example", i/100, i%100))
	}
	b.fill(st, "big", msgs, func(int) []addr.Mailbox { return rcpts })
	full := life()
	// The same queue without the store's recipient index: notifyd's
	// start-up cleaning reads all of rcpt/ (a link per recipient of every
	// archived message, queued or not) alongside the rebuild; this shows
	// the schedule's own share.
	must(os.Rename(filepath.Join(storeDir, "rcpt"), filepath.Join(storeDir, ".rcpt-aside")))
	must(os.Mkdir(filepath.Join(storeDir, "rcpt"), 0o755))
	bare := life()
	// And the index without the queue: every recipient link kept, the
	// messages' archive hidden, as when all have been silenced.
	must(os.RemoveAll(filepath.Join(storeDir, "rcpt"))) // only the probe's link
	must(os.Rename(filepath.Join(storeDir, ".rcpt-aside"), filepath.Join(storeDir, "rcpt")))
	show(storeDir)
	index := life()
	q := float64(msgs * per)
	fmt.Printf("\nnotifyd's memory with %s messages of %s recipients each queued (%s recipients over 100 domains, every one notifying, next attempt an hour away; store on %s) (%s):\n\n",
		commas(msgs), commas(per), commas(msgs*per), map[bool]string{true: "a tmpfs", false: "the disk"}[b.fast != ""], time.Now().UTC().Format("2006-01-02"))
	fmt.Println("| queued recipients | start-up (rebuild) | CPU by then | VmRSS then | once idle: CPU | VmRSS | VmHWM | VmHWM per queued recipient, less the empty queue's |")
	fmt.Println("|---|---:|---:|---:|---:|---:|---:|---:|")
	row := func(name string, s sample, per string) {
		fmt.Printf("| %s | %s | %.2f s | %s | %.2f s | %s | %s | %s |\n", name, ms(s.rebuild), s.cpu.Seconds(), mib(s.rss), s.idleCPU.Seconds(), mib(s.idleRSS), mib(s.hwm), per)
	}
	row("0", empty, "")
	row(commas(msgs*per), full, fmt.Sprintf("%.0f bytes", float64(full.hwm-empty.hwm)/q))
	row(commas(msgs*per)+", rcpt/ emptied", bare, fmt.Sprintf("%.0f bytes", float64(bare.hwm-empty.hwm)/q))
	row(fmt.Sprintf("0, but the %s recipient links in rcpt/", commas(msgs*per)), index, "")
}
