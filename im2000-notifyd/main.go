// Command im2000-notifyd is the message store's queue runner: it sends each
// recipient's notification agent a notification of every message waiting
// for it, records the outcome in the message's status sidecar, and sends
// again, with backoff, until the recipient silences the message, the
// message is cancelled, or its lifetime ends. See man/im2000-notifyd.8.
package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"im2000/lib/addr"
	"im2000/lib/conf"
	"im2000/lib/fail"
	"im2000/lib/locate"
	"im2000/lib/msgid"
	"im2000/lib/session"
	"im2000/lib/store"
	"im2000/lib/wire"
	"im2000/lib/wire/rnasp"
)

const usage = `usage: im2000-notifyd
  The queue runner of the store in $IM2000_STORE (or the store file of the
  configuration directory $IM2000_CONF). Runs until SIGTERM, under a
  supervisor; settings are files in the configuration directory.
  -h  show this help`

// batchMax bounds the notifications in one CommandNotify.
const batchMax = 1000

type runner struct {
	st          *store.Store
	loc         *locate.Locator
	location    wire.ServiceLocation // where recipients reach this store's MSRAP
	retryBase   time.Duration
	retryMax    time.Duration
	resend      time.Duration
	concurrency int
	timeout     time.Duration
}

// item is one recipient of one message, due for a notification.
type item struct {
	acct   *store.Account
	msg    msgid.ID
	index  int
	rcpt   store.Recipient
	sender addr.Mailbox
	size   uint64
}

// outcome is what became of one attempt.
type outcome struct {
	state store.Notification
	rna   string // where it went, for the log
}

func main() {
	fail.NoArgs(usage)
	r, err := load(conf.FromEnv())
	if err != nil {
		fail.Exit(fail.Temp(err))
	}
	fail.Exit(r.run())
}

func load(d conf.Dir) (*runner, error) {
	root, err := d.Store()
	if err != nil {
		return nil, err
	}
	r := &runner{timeout: time.Minute}
	if r.st, err = store.Open(root); err != nil {
		return nil, err
	}
	if r.loc, err = locate.FromConf(d); err != nil {
		return nil, err
	}
	where, err := d.String("storelocation", "")
	if err != nil {
		return nil, err
	}
	if where == "" {
		return nil, fmt.Errorf("write where recipients reach this store's MSRAP service (host:port, or a domain with _msrap._tcp records) to %s", d.Path("storelocation"))
	}
	if r.location, err = wire.ParseLocation(where); err != nil {
		return nil, fmt.Errorf("%s: %v", d.Path("storelocation"), err)
	}
	settings := []struct {
		name string
		def  int64
		to   *time.Duration
	}{{"retrybase", 60, &r.retryBase}, {"retrymax", 3600, &r.retryMax}, {"resend", 3600, &r.resend}}
	for _, s := range settings {
		n, err := d.Int(s.name, s.def)
		if err != nil {
			return nil, err
		}
		*s.to = time.Duration(max(n, 1)) * time.Second
	}
	c, err := d.Int("concurrency", 10)
	if err != nil {
		return nil, err
	}
	r.concurrency = int(max(c, 1))
	return r, nil
}

// run passes over the queue whenever a commit pulls the trigger, and at
// least every scan interval; SIGTERM lets the pass in flight finish.
func (r *runner) run() error {
	wake, err := r.trigger()
	if err != nil {
		return fail.Temp(err)
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	interval := min(r.retryBase, 15*time.Second)
	lastClean := time.Time{}
	fail.Warn("running: store %s, store location %v", r.st.Root, r.location)
	for {
		if time.Since(lastClean) > time.Hour {
			if err := r.st.Clean(time.Now()); err != nil {
				fail.Warn("cleaning the store: %v", err)
			}
			lastClean = time.Now()
		}
		r.pass(time.Now())
		select {
		case <-stop:
			fail.Warn("stopping")
			return nil
		case <-wake:
		case <-time.After(interval):
		}
	}
}

// trigger opens the store's FIFO, creating it if need be. Opened for
// reading and writing, it never reports end of file when writers come and go.
func (r *runner) trigger() (<-chan struct{}, error) {
	path := r.st.TriggerPath()
	if err := unix.Mkfifo(path, 0o622); err != nil && !errors.Is(err, unix.EEXIST) {
		return nil, fmt.Errorf("trigger %s: %v", path, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	wake := make(chan struct{}, 1)
	go func() {
		buf := make([]byte, 512)
		for {
			if _, err := f.Read(buf); err != nil {
				time.Sleep(time.Second)
			}
			select {
			case wake <- struct{}{}:
			default:
			}
		}
	}()
	return wake, nil
}

// pass finds every recipient due for a notification, sends them in one
// batch per destination domain, and records the outcomes.
func (r *runner) pass(now time.Time) {
	byDomain := map[string][]item{}
	accounts, err := r.st.Accounts()
	if err != nil {
		fail.Warn("listing accounts: %v", err)
		return
	}
	for _, name := range accounts {
		a, err := r.st.Account(name)
		if err != nil {
			fail.Warn("%s: %v", name, err)
			continue
		}
		ids, err := a.Todo()
		if err != nil {
			fail.Warn("%s: %v", name, err)
			continue
		}
		for _, id := range ids {
			r.collect(a, id, now, byDomain)
		}
	}
	// One session per destination at a time, its batches one after
	// another; up to concurrency destinations at once. The outcomes are
	// recorded together at the end of the pass, so that a message to many
	// domains has its sidecar written once, not once per domain.
	var wg sync.WaitGroup
	var mu sync.Mutex
	var items []item
	var outcomes []outcome
	sem := make(chan struct{}, r.concurrency)
	for domain, todo := range byDomain {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			for len(todo) > 0 {
				batch := todo[:min(len(todo), batchMax)]
				todo = todo[len(batch):]
				out := r.notify(domain, batch)
				mu.Lock()
				items, outcomes = append(items, batch...), append(outcomes, out...)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	r.record(items, outcomes, now)
}

// collect adds a message's due recipients; a message with nothing left to
// do, or past its lifetime, leaves the queue.
func (r *runner) collect(a *store.Account, id msgid.ID, now time.Time, byDomain map[string][]item) {
	m, err := a.Open(id)
	if errors.Is(err, store.ErrNoSuch) {
		return // cancelled meanwhile
	}
	if err != nil {
		fail.Warn("%s/%s: %v", a.Name, id, err)
		return
	}
	defer m.Close()
	st, err := a.Status(id)
	if err != nil {
		fail.Warn("%s/%s: %v", a.Name, id, err)
		return
	}
	if now.After(m.Env.Expires()) {
		fail.Warn("%s/%s: lifetime over, no more notifications", a.Name, id)
		a.Done(id)
		return
	}
	done := true
	for i, rs := range st.Recipients {
		if rs.Notification.Final() {
			continue
		}
		done = false
		if rs.Next.After(now) {
			continue
		}
		rcpt := m.Env.Recipients[i]
		byDomain[rcpt.Addr.Domain] = append(byDomain[rcpt.Addr.Domain], item{acct: a, msg: id, index: i, rcpt: rcpt, sender: m.Env.Sender, size: uint64(m.Size())})
	}
	if done {
		a.Done(id)
	}
}

// notify sends one batch to the domain's agent and returns each item's outcome.
func (r *runner) notify(domain string, batch []item) []outcome {
	all := func(state store.Notification, rna string) []outcome {
		out := make([]outcome, len(batch))
		for i := range out {
			out[i] = outcome{state, rna}
		}
		return out
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
	defer cancel()
	c, err := session.Connect(ctx, r.loc, rnasp.Protocol, domain, r.timeout)
	switch {
	case errors.Is(err, locate.ErrBadDomain):
		return all(store.BadDomain, domain)
	case errors.Is(err, locate.ErrNoService):
		return all(store.NoService, domain)
	case err != nil:
		return all(store.NoServer, domain)
	}
	defer c.Close()
	rna := c.RemoteAddr()
	cmd := &rnasp.Notify{}
	for _, it := range batch {
		size := it.size
		cmd.Notifications = append(cmd.Notifications, rnasp.Notification{StoreClear: r.location,
			Recipient: wire.FromAddr(it.rcpt.Addr), ID: it.rcpt.ID, Sender: it.sender.String(), Size: &size})
	}
	pdu, err := c.Call(cmd)
	if err != nil {
		fail.Warn("%s (%s): %v", domain, rna, err)
		return all(store.ProtocolError, rna)
	}
	results := pdu.Response.(*rnasp.NotifyOK).Results
	out := all(store.Notifying, rna) // no results: all accepted
	if len(results) > 0 {
		if len(results) != len(batch) {
			fail.Warn("%s (%s): %d results for %d notifications", domain, rna, len(results), len(batch))
			return all(store.ProtocolError, rna)
		}
		for i, res := range results {
			if res == rnasp.NoUser {
				out[i].state = store.NoUser
			}
		}
	}
	return out
}

// record writes the outcomes into the sidecars, one update per message,
// never overwriting what happened meanwhile (a silence, a permanent state).
func (r *runner) record(batch []item, out []outcome, now time.Time) {
	type key struct {
		acct *store.Account
		msg  msgid.ID
	}
	byMsg := map[key][]int{}
	for i, it := range batch {
		byMsg[key{it.acct, it.msg}] = append(byMsg[key{it.acct, it.msg}], i)
	}
	for k, idx := range byMsg {
		err := k.acct.Update(k.msg, func(_ *store.Envelope, st *store.Status) error {
			for _, i := range idx {
				rs := &st.Recipients[batch[i].index]
				if rs.Notification.Final() {
					continue
				}
				rs.Attempts++
				rs.Last = now
				rs.Notification = out[i].state
				switch {
				case out[i].state == store.Notifying:
					rs.Next = now.Add(r.resend)
				case out[i].state.Final():
					rs.Next = time.Time{}
				default:
					rs.Next = now.Add(r.backoff(rs.Attempts))
				}
			}
			return nil
		})
		if err != nil && !errors.Is(err, store.ErrNoSuch) {
			fail.Warn("%s/%s: recording: %v", k.acct.Name, k.msg, err)
		}
		for _, i := range idx {
			fail.Warn("%s %s %s %s", k.msg, batch[i].rcpt.Addr, out[i].rna, out[i].state)
		}
	}
}

// backoff doubles per attempt from retrybase up to retrymax, with jitter
// of ±50% so that retries from many messages do not come in waves.
func (r *runner) backoff(attempts int64) time.Duration {
	d := r.retryBase
	for i := int64(1); i < attempts && d < r.retryMax; i++ {
		d *= 2
	}
	d = min(d, r.retryMax)
	return time.Duration(float64(d) * (0.5 + rand.Float64()))
}
