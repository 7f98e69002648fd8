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
// checks again. What Retrieve returns carries the reader's trace fields
// (lib/trace): Return-Path with the verified sender, and one Received.
package inbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"im2000/lib/addr"
	"im2000/lib/agent"
	"im2000/lib/binding"
	"im2000/lib/conf"
	"im2000/lib/fail"
	"im2000/lib/locate"
	"im2000/lib/session"
	"im2000/lib/trace"
	"im2000/lib/wire"
	"im2000/lib/wire/msrap"
	"im2000/lib/wire/rnaqp"
)

// ErrGone is a message its store no longer has (cancelled or expired).
var ErrGone = errors.New("gone from its store (cancelled or expired)")

// Inbox is one account's pending notifications and the sessions to reach
// their stores.
type Inbox struct {
	loc     *locate.Locator
	pending *agent.Spool
	timeout time.Duration
	max     int64 // databytes: the largest message retrieved
	stores  map[string]*session.Client
	bind    *binding.Checker
	senders map[string]addr.Mailbox // verified senders, by agent.Key
	me      string                  // the reader's host, for Received
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
	max, err := d.Int("databytes", 16<<20)
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
	return &Inbox{loc: loc, pending: pending, timeout: timeout, max: max, stores: map[string]*session.Client{},
		bind: bind, senders: map[string]addr.Mailbox{}, me: me}, nil
}

// Close ends the sessions with the stores.
func (b *Inbox) Close() {
	for _, c := range b.stores {
		c.Close()
	}
}

func (b *Inbox) dial(p *wire.Protocol, where string) (*session.Client, error) {
	ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
	defer cancel()
	return session.DialWhere(ctx, b.loc, p, where, b.timeout)
}

// ErrAuth is a refused account or password at the agent.
var ErrAuth = errors.New("the agent refuses the account or password")

// Take moves the account's notifications from its agent (RNAQP at where)
// into the pending queue, and returns how many it took.
func (b *Inbox) Take(where, account, password string) (int, error) {
	c, err := b.dial(rnaqp.Protocol, where)
	if err != nil {
		return 0, fail.Temp(fmt.Errorf("agent %s: %w", where, err))
	}
	defer c.Close()
	if _, err := session.Expect[rnaqp.AuthenticateOK](c, &rnaqp.Authenticate{Account: account, Password: password}); err != nil {
		var se *session.StatusError
		if errors.As(err, &se) && se.Status == rnaqp.ErrorNotAuthenticated {
			return 0, fail.Perm(fmt.Errorf("agent %s, account %s: %w", where, account, ErrAuth))
		}
		return 0, fail.Temp(fmt.Errorf("agent %s: %w", where, err))
	}
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
func (b *Inbox) Done(e agent.Entry) { b.pending.Remove("pending", []agent.Entry{e}) }

// Sender checks the notification's sender binding (lib/binding), without
// contacting its store, and returns the verified sender; an error wraps
// binding.ErrUnverified.
func (b *Inbox) Sender(e agent.Entry) (addr.Mailbox, error) {
	key := agent.Key(&e.N)
	if s, ok := b.senders[key]; ok {
		return s, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*b.timeout)
	defer cancel()
	s, err := b.bind.Check(ctx, &e.N.Notification)
	if err != nil {
		return addr.Mailbox{}, err
	}
	b.senders[key] = s
	return s, nil
}

// Bound returns the entries whose senders are verified. Each of the others
// is dropped from the pending queue, unretrieved (its store learns
// nothing), with one log line, prefixed with logPrefix, naming the claimed
// sender, the store location and why. A genuine message dropped because its
// domain's records could not be read is notified again by its store, which
// keeps notifying until it is silenced.
func (b *Inbox) Bound(entries []agent.Entry, logPrefix string) []agent.Entry {
	var out []agent.Entry
	for _, e := range entries {
		if _, err := b.Sender(e); err != nil {
			n := e.N.Notification
			fail.Warn("%s", trace.Escape(fmt.Sprintf("%sdropped %s from unverified sender %s at %s, not retrieved: %v", logPrefix, n.ID, n.Sender, n.StoreClear, err)))
			b.Done(e)
			continue
		}
		out = append(out, e)
	}
	return out
}

// store returns a session with the store a notification names.
func (b *Inbox) store(l wire.ServiceLocation) (*session.Client, error) {
	key := l.String()
	if c, ok := b.stores[key]; ok {
		return c, nil
	}
	var c *session.Client
	var err error
	if l.Domain != nil {
		c, err = b.dial(msrap.Protocol, key)
	} else {
		err = errors.New("no address")
		for _, a := range l.Literals {
			if c, err = b.dial(msrap.Protocol, a.String()); err == nil {
				break
			}
		}
	}
	if err != nil {
		return nil, err
	}
	b.stores[key] = c
	return c, nil
}

// call sends an MSRAP command to the notification's store and returns
// the answer it calls for, T. On a transport or protocol error it drops
// the session, so that the next call dials again.
func call[T wire.Body](b *Inbox, e agent.Entry, cmd wire.Body) (T, error) {
	n := e.N.Notification
	var zero T
	if _, err := b.Sender(e); err != nil {
		return zero, err // never a connection to a store that does not bind its sender
	}
	c, err := b.store(n.StoreClear)
	if err != nil {
		return zero, err
	}
	r, err := session.Expect[T](c, cmd)
	var se *session.StatusError
	switch {
	case errors.As(err, &se) && se.Status == msrap.ErrorNoSuchMessage:
		return r, ErrGone
	case err != nil && !errors.As(err, &se):
		b.drop(n.StoreClear, c)
	}
	return r, err
}

// drop ends the session with a store, after an answer that leaves it in
// doubt.
func (b *Inbox) drop(l wire.ServiceLocation, c *session.Client) {
	delete(b.stores, l.String())
	if c != nil {
		c.Close()
	}
}

// Retrieve fetches a message (msrap.All) or its header (msrap.HeadersOnly)
// from the store of a notification whose sender is verified, and puts the
// reader's trace fields on top: Return-Path with the verified sender (any
// Return-Path the store served is removed) and one Received naming the
// store, the identifier and the time. The result has CRLF line ends.
func (b *Inbox) Retrieve(e agent.Entry, kind uint64) ([]byte, error) {
	sender, err := b.Sender(e)
	if err != nil {
		return nil, err
	}
	msg, err := b.retrieve(e, kind)
	if err != nil {
		return nil, err
	}
	n := e.N.Notification
	st := trace.Stamp{Sender: sender, Store: n.StoreClear, ID: n.ID, By: b.me, Prog: fail.Name, At: time.Now()}
	return st.Apply(msg, kind == msrap.HeadersOnly)
}

// retrieve fetches a part of a message as the store serves it, paging
// until it has the size the store states. A size over databytes, a size
// that changes between pages, more data than the size, or a page that
// brings nothing before the end is a protocol error.
func (b *Inbox) retrieve(e agent.Entry, kind uint64) ([]byte, error) {
	var msg []byte
	var size uint64
	for {
		r, err := call[*msrap.RetrieveOK](b, e, &msrap.Retrieve{ID: e.N.Notification.ID, Type: kind, Offset: uint64(len(msg))})
		if err != nil {
			return nil, err
		}
		var bad string
		switch {
		case r.Size > uint64(b.max):
			bad = fmt.Sprintf("a size of %d octets, over databytes (%d)", r.Size, b.max)
		case len(msg) > 0 && r.Size != size:
			bad = fmt.Sprintf("a size of %d octets after %d", r.Size, size)
		case uint64(len(r.Data)) > r.Size-uint64(len(msg)):
			bad = fmt.Sprintf("%d octets at offset %d of %d", len(r.Data), len(msg), r.Size)
		case len(r.Data) == 0 && uint64(len(msg)) != r.Size:
			bad = fmt.Sprintf("nothing at offset %d of %d", len(msg), r.Size)
		}
		if bad != "" {
			b.drop(e.N.Notification.StoreClear, b.stores[e.N.Notification.StoreClear.String()])
			return nil, fmt.Errorf("MSRAP: %w: the store answered a retrieval with %s", session.ErrProtocol, bad)
		}
		size = r.Size
		msg = append(msg, r.Data...)
		if uint64(len(msg)) == size {
			return msg, nil
		}
	}
}

// Size is the message's size: from the notification, else asked of the store.
func (b *Inbox) Size(e agent.Entry) (uint64, error) {
	if s := e.N.Notification.Size; s != nil {
		return *s, nil
	}
	r, err := call[*msrap.QuerySizeOK](b, e, &msrap.QuerySize{ID: e.N.Notification.ID})
	if err != nil {
		return 0, err
	}
	return r.Size, nil
}

// Silence tells the store the recipient has the message.
func (b *Inbox) Silence(e agent.Entry) error {
	_, err := call[msrap.SilenceOK](b, e, &msrap.Silence{ID: e.N.Notification.ID})
	if errors.Is(err, ErrGone) {
		return nil
	}
	return err
}
