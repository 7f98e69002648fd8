// The queue benchmark's memory section: notifyd's resident memory with a
// million queued recipients in its schedule, and with none.

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"im2000/lib/addr"
	"im2000/lib/store"
)

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
