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
	"sync/atomic"
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

// maxSeconds bounds every time setting: a year, the longest lifetime.
const maxSeconds = 366 * 24 * 3600

// config is everything read from the configuration directory; SIGHUP
// replaces it whole, and each batch uses the one in force when it started.
type config struct {
	loc         *locate.Locator
	location    wire.ServiceLocation  // where recipients reach this store's MSRAP
	ssl         *wire.ServiceLocation // storessl: its MSRAP over TLS, if it has one
	retryBase   time.Duration
	retryMax    time.Duration
	resend      time.Duration
	timeout     time.Duration
	concurrency int
	smarthost   *smarthost // nil: none (smarthost.go)
}

// settings are the files load reads, for logging what SIGHUP changed.
var settings = []string{"storelocation", "storessl", "tlsca", "tlsrequire", "routes", "resolvers", "retrybase", "retrymax", "resend", "timeout", "concurrency", "smarthost", "smarthostuser"}

func main() {
	fail.NoArgs(usage)
	d := conf.FromEnv()
	root, err := d.Store()
	if err != nil {
		logFatal(err)
	}
	st, err := store.Open(root)
	if err != nil {
		logFatal(err)
	}
	cfg, err := load(d)
	if err != nil {
		logFatal(err)
	}
	logSettings(d)
	if err := run(d, st, cfg); err != nil {
		logFatal(err)
	}
}

func load(d conf.Dir) (*config, error) {
	c := &config{}
	var err error
	if c.loc, err = locate.FromConf(d); err != nil {
		return nil, err
	}
	where, err := d.Str("storelocation")
	if err != nil {
		return nil, err
	}
	if where == "" {
		return nil, fmt.Errorf("write where recipients reach this store's MSRAP service (host:port, or a domain with _msrap._tcp records) to %s", d.Path("storelocation"))
	}
	if c.location, err = wire.ParseLocation(where); err != nil {
		return nil, fmt.Errorf("%s: %v", d.Path("storelocation"), err)
	}
	if c.ssl, err = storeSSL(d); err != nil {
		return nil, err
	}
	durations := []struct {
		name string
		to   *time.Duration
	}{{"retrybase", &c.retryBase}, {"retrymax", &c.retryMax}, {"resend", &c.resend}, {"timeout", &c.timeout}}
	for _, s := range durations {
		n, err := d.Num(s.name)
		if err != nil {
			return nil, err
		}
		if n > maxSeconds {
			return nil, fmt.Errorf("%s: %d seconds is more than a year (%d)", d.Path(s.name), n, maxSeconds)
		}
		*s.to = time.Duration(max(n, 1)) * time.Second
	}
	n, err := d.Num("concurrency")
	if err != nil {
		return nil, err
	}
	c.concurrency = int(max(n, 1))
	if c.smarthost, err = loadSmarthost(d); err != nil {
		return nil, err
	}
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

// run is the scheduler: it alone owns the schedule, starts a worker for
// each destination with entries due (one at a time per destination, up to
// concurrency at once, at most half of them for slow destinations), hands
// what the workers report to the recorders and files their entries again,
// takes new messages from the intake, and handles signals. SIGTERM lets
// the batches in flight finish and record (a batch of hand-offs to the
// smarthost, after the message in progress).
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
	go reaper(d, st, stopIntake)
	snap := snapshot(d)

	var current atomic.Pointer[config]
	current.Store(cfg)
	recs := make([]*recorder, recorders)
	fromRecorders := make(chan recorded)
	for i := range recs {
		recs[i] = &recorder{wake: make(chan struct{}, 1)}
		go recs[i].run(current.Load, fromRecorders)
	}

	s := newSchedule()
	fromWorkers := make(chan sent)
	var w workers
	recording := 0
	stopping := false
	timer := time.NewTimer(time.Hour)
	logRunning(st.Root, cfg.location)
	for {
		now := time.Now()
		w.reclassify(now, cfg.slowAfter())
		for !stopping {
			dst, batch := s.take(now.UnixNano(), batchMax, w.allow(cfg.concurrency))
			if dst == nil {
				break
			}
			w.start(dst, now)
			go func(c *config) { fromWorkers <- work(c, dst, batch) }(cfg)
		}
		// After the starts, so that the batches just out are watched too.
		reclassify := w.reclassify(now, cfg.slowAfter())
		if stopping && w.busy() == 0 && recording == 0 {
			logStopped()
			return nil
		}
		wait := time.Hour
		if !reclassify.IsZero() {
			wait = reclassify.Sub(now)
		}
		if due, ok := s.next(w.allow(cfg.concurrency)); ok && !stopping {
			wait = min(wait, max(time.Duration(due-now.UnixNano()), 0))
		}
		timer.Reset(max(wait, 0))
		select {
		case r := <-fromWorkers:
			late := w.end(r.d)
			s.done(r.d, len(r.entries) > 0, r.slow || late)
			s.back(r.d.domain, r.deferred)
			s.drop(r.dropped)
			if len(r.entries) > 0 {
				byRec := make([][]result, recorders)
				for i, e := range r.entries {
					k := int(e.msg.id[0]) % recorders
					byRec[k] = append(byRec[k], result{e: e, domain: r.d.domain, rna: r.rna, out: r.out[i], end: r.end})
				}
				for k, rs := range byRec {
					if len(rs) > 0 {
						recording += len(rs)
						recs[k].put(rs)
					}
				}
			}
		case r := <-fromRecorders:
			recording -= len(r.kept) + len(r.dropped)
			for _, k := range r.kept {
				s.back(k.domain, []*entry{k.e})
			}
			s.drop(r.dropped)
		case msgs := <-fromDisk:
			horizon := time.Now().Add(max(cfg.resend, cfg.retryMax)).UnixNano()
			for _, l := range msgs {
				if l.msg != nil {
					// A due time past any retry or resend is a clock
					// that was set back: not a reason to wait.
					for _, e := range l.entries {
						e.due = min(e.due, horizon)
					}
					s.add(l.msg, l.domains, l.entries)
				}
			}
		case <-timer.C:
		case sig := <-sigs:
			switch sig {
			case syscall.SIGHUP:
				cfg = reload(d, cfg, &snap)
				current.Store(cfg)
			case syscall.SIGALRM:
				n := s.expedite(time.Now().UnixNano())
				logExpedited(n)
			default:
				if !stopping {
					close(stopIntake)
				}
				stopping = true
				smarthostStop.Store(true) // smarthost.go: the batch out stops after its session
			}
		}
	}
}

// workers counts the batches out by their destination's class. Proven and
// untried destinations share concurrency workers, untried ones at most half
// of them; slow ones have at most half as many again of their own. A batch
// out longer than slowAfter without an answer is late: it holds no class's
// place any more, so the next proven destination gets one at once, and its
// destination comes back slow. So neither a crowd of tarpits nor of new
// domains holds every worker, and a domain that answers always has one.
// Late batches count toward a ceiling of concurrency and a half for
// everything but slow ones, so sessions stay bounded (at most twice
// concurrency in all) however many agents stall.
type workers struct {
	out   [classes]int
	late  map[*destination]bool      // out too long: holding no class's place
	since map[*destination]time.Time // when each batch not yet slow or late went out
}

func (w *workers) allow(concurrency int) [classes]bool {
	half := max(concurrency/2, 1)
	fast := w.out[proven] + w.out[untried]
	return [classes]bool{
		proven:  fast < concurrency && fast+len(w.late) < concurrency+half,
		untried: fast+len(w.late) < concurrency && w.out[untried] < half,
		slow:    w.out[slow] < half,
	}
}

func (w *workers) busy() int {
	return w.out[proven] + w.out[untried] + w.out[slow] + len(w.late)
}

func (w *workers) start(d *destination, now time.Time) {
	w.out[d.class]++
	if d.class != slow {
		if w.since == nil {
			w.since = map[*destination]time.Time{}
		}
		w.since[d] = now
	}
}

// end counts a batch back in, and says whether it was late.
func (w *workers) end(d *destination) bool {
	if w.late[d] {
		delete(w.late, d)
		return true
	}
	w.out[d.class]--
	delete(w.since, d)
	return false
}

// reclassify makes the batches out longer than after late, and returns
// when the next one will be due for that (zero: none).
func (w *workers) reclassify(now time.Time, after time.Duration) time.Time {
	var next time.Time
	for d, t0 := range w.since {
		if now.Sub(t0) >= after {
			delete(w.since, d)
			w.out[d.class]--
			if w.late == nil {
				w.late = map[*destination]bool{}
			}
			w.late[d] = true
		} else if next.IsZero() || t0.Add(after).Before(next) {
			next = t0.Add(after)
		}
	}
	return next
}

// slowAfter is how long a batch may be out before its destination counts
// as slow: a quarter of the timeout, within 2 and 10 seconds.
func (c *config) slowAfter() time.Duration {
	return min(max(c.timeout/4, 2*time.Second), 10*time.Second)
}

// reload reads the settings again; on an error the old ones stay in force.
func reload(d conf.Dir, old *config, snap *map[string]string) *config {
	c, err := load(d)
	if err != nil {
		logReloadFailed(err)
		return old
	}
	now := snapshot(d)
	changed := false
	for _, name := range settings {
		if now[name] != (*snap)[name] {
			logChanged(name)
			changed = true
		}
	}
	if !changed {
		logUnchanged()
	}
	*snap = now
	logSettings(d)
	return c
}

// cleaner removes the debris of crashed writers once an hour, the first
// time five minutes after start, so as not to add its walk of the store to
// the start-up rebuild.
func cleaner(st *store.Store, stop <-chan struct{}) {
	wait := 5 * time.Minute
	for {
		select {
		case <-stop:
			return
		case <-time.After(wait):
		}
		if err := st.Clean(time.Now()); err != nil {
			logCleanFailed(err)
		}
		wait = time.Hour
	}
}
