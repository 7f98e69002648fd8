// Package inbox is the recipient's side of IM2000, shared by the clients
// that read mail (im2000-fetch, im2000-pop3d): take the account's
// notifications from its agent into a local pending queue, retrieve each
// message from the sender's store, and silence it there once it is safe.
//
// The pending queue is lib/agent's spool (fsynced), so a notification
// taken from the agent is never lost locally, and a second notification of
// the same message collapses into the first.
//
// No store is contacted for a notification whose sender is not verified
// (lib/binding): Bound drops such notifications, and every call to a store
// checks again. What RetrieveTo writes carries the reader's trace fields
// (lib/trace): Return-Path with the verified sender, and one Received.
//
// Reading is bounded (DESIGN-NOTES.md, "Bounded reading"): a retrieval is
// streamed a page at a time and never exceeds the notification's size or
// databytes; each store gets one chance per Inbox (one run, one session);
// an entry failing past maxlifetime is dropped.
package inbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"im2000/lib/addr"
	"im2000/lib/agent"
	"im2000/lib/binding"
	"im2000/lib/conf"
	"im2000/lib/fail"
	"im2000/lib/locate"
	"im2000/lib/session"
	"im2000/lib/wire/rnaqp"
)

// ErrGone is a message its store no longer has (cancelled or expired).
var ErrGone = errors.New("gone from its store (cancelled or expired)")

// Inbox is one account's pending notifications and the sessions to reach
// their stores.
//
// Its methods may be called from several goroutines at once (PerStore).
type Inbox struct {
	// LogPrefix comes after the event in the log lines the Inbox writes
	// itself (log.go: entries refused or expired), e.g. a POP3 session's
	// "peer: user: ".
	LogPrefix string

	loc     *locate.Locator
	pending *agent.Spool
	timeout time.Duration
	max     int64         // databytes: the largest message retrieved
	life    time.Duration // maxlifetime: how long an entry may keep failing
	me      string        // the reader's host, for Received
	now     func() time.Time

	bindMu   sync.Mutex // the binding checker's caches are not shared
	bind     *binding.Checker
	mu       sync.Mutex              // guards what follows
	stores   map[string]*store       // by locationKey
	failedAt map[string]error        // ended chances, by chanceKeys
	senders  map[string]addr.Mailbox // verified senders, by agent.Key
	until    time.Time               // SetDeadline
}

// maxTake bounds the notifications one Take accepts, so that an agent
// that never runs out cannot fill the disk in one run; the rest wait at
// the agent for the next.
const maxTake = 100000

// Open opens (creating) the pending queue kept in dir.
func Open(d conf.Dir, dir string) (*Inbox, error) {
	loc, err := locate.FromConf(d)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(dir, "pending"), 0o700); err != nil {
		return nil, fail.Temp(err)
	}
	timeout, err := session.ClientTimeout(d)
	if err != nil {
		return nil, err
	}
	max, err := d.Num("databytes")
	if err != nil {
		return nil, err
	}
	// Read as im2000-submitd reads it: the longest a message may live.
	life, err := d.Num("maxlifetime")
	if err != nil {
		return nil, err
	}
	bind, err := binding.New(loc, d)
	if err != nil {
		return nil, err
	}
	me, err := d.Me()
	if err != nil {
		return nil, err
	}
	pending, err := agent.Open(dir, true)
	if err != nil {
		return nil, fail.Temp(err)
	}
	return &Inbox{loc: loc, pending: pending, timeout: timeout, max: max, life: time.Duration(life) * time.Second,
		stores: map[string]*store{}, failedAt: map[string]error{}, bind: bind, senders: map[string]addr.Mailbox{}, me: me, now: time.Now}, nil
}

// Close ends the sessions with the stores.
func (b *Inbox) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, s := range b.stores {
		if s.mu.TryLock() { // a session in use is closed by its user
			s.close()
			s.mu.Unlock()
		}
	}
}

// ErrAuth is a refused account or password at the agent.
var ErrAuth = errors.New("the agent refuses the account or password")

// Take moves the account's notifications from its agent (RNAQP at where)
// into the pending queue, and returns how many it took.
func (b *Inbox) Take(where, account, password string) (int, error) {
	c, err := loginAgent(b.loc, b.timeout, where, account, password)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	n := 0
	for n < maxTake {
		r, err := session.Expect[*rnaqp.RetrieveAndClearOK](c, rnaqp.RetrieveAndClear{})
		if err != nil {
			return n, fail.Temp(fmt.Errorf("agent %s: %w", where, err))
		}
		got := r.Notifications
		if len(got) == 0 {
			return n, nil
		}
		for i := range got {
			if err := b.pending.Put("pending", &got[i]); err != nil {
				return n, fail.Temp(err) // the store re-sends it: a delay, not a loss
			}
			n++
		}
	}
	return n, nil
}

// Pending lists the notifications not yet done with, oldest first.
func (b *Inbox) Pending() ([]agent.Entry, error) { return b.pending.List("pending", 1<<30) }

// Done drops a notification from the pending queue.
func (b *Inbox) Done(e agent.Entry) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.pending.Remove("pending", []agent.Entry{e})
}

// Sender checks the notification's sender binding (lib/binding), without
// contacting its store, and returns the verified sender; an error wraps
// binding.ErrUnverified.
func (b *Inbox) Sender(e agent.Entry) (addr.Mailbox, error) {
	key := agent.Key(&e.N)
	b.mu.Lock()
	s, ok := b.senders[key]
	b.mu.Unlock()
	if ok {
		return s, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*b.timeout)
	defer cancel()
	b.bindMu.Lock()
	s, err := b.bind.Check(ctx, &e.N.Notification)
	b.bindMu.Unlock()
	if err != nil {
		return addr.Mailbox{}, err
	}
	b.mu.Lock()
	b.senders[key] = s
	b.mu.Unlock()
	return s, nil
}

// Bound returns the entries whose senders are verified. Each of the others
// is dropped from the pending queue, unretrieved (its store learns
// nothing), with one log line, logPrefix after its event, naming the claimed
// sender, the store location and why. A genuine message dropped because its
// domain's records could not be read is notified again by its store, which
// keeps notifying until it is silenced.
func (b *Inbox) Bound(entries []agent.Entry, logPrefix string) []agent.Entry {
	var out []agent.Entry
	for _, e := range entries {
		if _, err := b.Sender(e); err != nil {
			logUnverified(logPrefix, &e.N.Notification, err)
			b.Done(e)
			continue
		}
		out = append(out, e)
	}
	return out
}
