// Command im2000-notifyd is the message store's queue runner: it sends each
// recipient's notification agent a notification of every message waiting
// for it, records the outcome in the message's status sidecar, and sends
// again, with backoff, until the recipient silences the message, the
// message is cancelled, or its lifetime ends. See man/im2000-notifyd.8.
//
// The engine is in schedule.go (the in-memory queue), intake.go (from the
// disk into it) and notify.go (one batch to one destination); this file
// wires them together and handles settings and signals.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"im2000/lib/conf"
	"im2000/lib/fail"
	"im2000/lib/locate"
	"im2000/lib/store"
	"im2000/lib/wire"
)

const usage = `usage: im2000-notifyd
  The queue runner of the store in $IM2000_STORE (or the store file of the
  configuration directory $IM2000_CONF). Runs until SIGTERM, under a
  supervisor; settings are files in the configuration directory.
  SIGHUP re-reads the settings; SIGALRM retries every deferred recipient now.
  -h  show this help`

// batchMax bounds the notifications in one CommandNotify.
const batchMax = 1000

// config is everything read from the configuration directory; SIGHUP
// replaces it whole, and each batch uses the one in force when it started.
type config struct {
	loc         *locate.Locator
	location    wire.ServiceLocation // where recipients reach this store's MSRAP
	retryBase   time.Duration
	retryMax    time.Duration
	resend      time.Duration
	timeout     time.Duration
	concurrency int
}

// settings are the files load reads, for logging what SIGHUP changed.
var settings = []string{"storelocation", "routes", "resolvers", "retrybase", "retrymax", "resend", "timeout", "concurrency"}

func main() {
	fail.NoArgs(usage)
	d := conf.FromEnv()
	root, err := d.Store()
	if err != nil {
		fail.Exit(fail.Temp(err))
	}
	st, err := store.Open(root)
	if err != nil {
		fail.Exit(fail.Temp(err))
	}
	cfg, err := load(d)
	if err != nil {
		fail.Exit(fail.Temp(err))
	}
	fail.Exit(run(d, st, cfg))
}

func load(d conf.Dir) (*config, error) {
	c := &config{}
	var err error
	if c.loc, err = locate.FromConf(d); err != nil {
		return nil, err
	}
	where, err := d.String("storelocation", "")
	if err != nil {
		return nil, err
	}
	if where == "" {
		return nil, fmt.Errorf("write where recipients reach this store's MSRAP service (host:port, or a domain with _msrap._tcp records) to %s", d.Path("storelocation"))
	}
	if c.location, err = wire.ParseLocation(where); err != nil {
		return nil, fmt.Errorf("%s: %v", d.Path("storelocation"), err)
	}
	durations := []struct {
		name string
		def  int64
		to   *time.Duration
	}{{"retrybase", 60, &c.retryBase}, {"retrymax", 3600, &c.retryMax}, {"resend", 3600, &c.resend}, {"timeout", 60, &c.timeout}}
	for _, s := range durations {
		n, err := d.Int(s.name, s.def)
		if err != nil {
			return nil, err
		}
		*s.to = time.Duration(max(n, 1)) * time.Second
	}
	n, err := d.Int("concurrency", 10)
	if err != nil {
		return nil, err
	}
	c.concurrency = int(max(n, 1))
	return c, nil
}

// snapshot is the text of every setting, for telling what a reload changed.
func snapshot(d conf.Dir) map[string]string {
	m := map[string]string{}
	for _, name := range settings {
		b, err := os.ReadFile(d.Path(name))
		if err != nil {
			m[name] = "(default)"
		} else {
			m[name] = string(b)
		}
	}
	return m
}

// batchDone is a worker's answer.
type batchDone struct {
	d             *destination
	kept, dropped []*entry
}

// run is the scheduler: it alone owns the schedule, starts a worker for
// each destination with entries due (one at a time per destination, up to
// concurrency at once), takes new messages from the intake, and handles
// signals. SIGTERM lets the batches in flight finish and record.
func run(d conf.Dir, st *store.Store, cfg *config) error {
	wake, err := listen(st)
	if err != nil {
		return fail.Temp(err)
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGALRM)
	fromDisk := make(chan []loaded, 4)
	stopIntake := make(chan struct{})
	go (&intake{st: st, out: fromDisk, wake: wake}).run(stopIntake)
	go cleaner(st, stopIntake)
	snap := snapshot(d)

	s := newSchedule()
	results := make(chan batchDone)
	running := 0
	stopping := false
	timer := time.NewTimer(time.Hour)
	fail.Warn("running: store %s, store location %v", st.Root, cfg.location)
	for {
		now := time.Now().UnixNano()
		for !stopping && running < cfg.concurrency {
			dst, batch := s.take(now, batchMax)
			if dst == nil {
				break
			}
			running++
			go func(c *config) {
				kept, dropped := work(c, dst.domain, batch)
				results <- batchDone{dst, kept, dropped}
			}(cfg)
		}
		if stopping && running == 0 {
			fail.Warn("stopping")
			return nil
		}
		wait := time.Hour
		if due, ok := s.next(); ok && running < cfg.concurrency {
			wait = max(time.Duration(due-now), 0)
		}
		timer.Reset(wait)
		select {
		case r := <-results:
			running--
			s.done(r.d, r.kept, r.dropped)
		case msgs := <-fromDisk:
			for _, l := range msgs {
				if l.msg != nil {
					s.add(l.msg, l.domains, l.entries)
				}
			}
		case <-timer.C:
		case sig := <-sigs:
			switch sig {
			case syscall.SIGHUP:
				cfg = reload(d, cfg, &snap)
			case syscall.SIGALRM:
				n := s.expedite(time.Now().UnixNano())
				fail.Warn("SIGALRM: %d deferred recipients due now", n)
			default:
				if !stopping {
					close(stopIntake)
				}
				stopping = true
			}
		}
	}
}

// reload reads the settings again; on an error the old ones stay in force.
func reload(d conf.Dir, old *config, snap *map[string]string) *config {
	c, err := load(d)
	if err != nil {
		fail.Warn("SIGHUP: keeping the old settings: %v", err)
		return old
	}
	now := snapshot(d)
	changed := false
	for _, name := range settings {
		if now[name] != (*snap)[name] {
			fail.Warn("SIGHUP: %s changed", name)
			changed = true
		}
	}
	if !changed {
		fail.Warn("SIGHUP: settings re-read, nothing changed")
	}
	*snap = now
	return c
}

// cleaner removes the debris of crashed writers once an hour.
func cleaner(st *store.Store, stop <-chan struct{}) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		if err := st.Clean(time.Now()); err != nil {
			fail.Warn("cleaning the store: %v", err)
		}
		select {
		case <-stop:
			return
		case <-t.C:
		}
	}
}
