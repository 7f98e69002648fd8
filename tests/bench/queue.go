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
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"im2000/lib/addr"
	"im2000/lib/store"
	"im2000/lib/wire"
)

var (
	queuedFlag  = flag.String("queued", "0,10000,100000", "queue: messages already queued awaiting silence, per configuration")
	qmsgsFlag   = flag.Int("qmsgs", 1000, "queue: messages committed one after another per run")
	qroundsFlag = flag.Int("qrounds", 3, "queue: interleaved rounds of every configuration; medians are reported")
	qrcptsFlag  = flag.Int("qrcpts", 1000000, "queue: queued recipients for the memory measurement (messages of 1,000 recipients); 0 skips it")
)

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
