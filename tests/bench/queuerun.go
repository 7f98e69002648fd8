// One run of the queue benchmark: notifyd started on a store, messages
// committed and timed to bob's spool, notifyd stopped; and the tarpit a
// run may send to.

package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"im2000/lib/addr"
	"im2000/lib/store"
)

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
