// Package inbox is the recipient's side of IM2000, shared by the clients
// that read mail (im2000-fetch, im2000-pop3d): take the account's
// notifications from its agent into a local pending queue, retrieve each
// message from the sender's store, and silence it there once it is safe.
//
// The pending queue is lib/agent's spool (fsynced), so a notification
// taken from the agent is never lost locally, and a second notification of
// the same message collapses into the first.
package inbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"im2000/lib/agent"
	"im2000/lib/conf"
	"im2000/lib/fail"
	"im2000/lib/locate"
	"im2000/lib/session"
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
	stores  map[string]*session.Client
}

// Open opens (creating) the pending queue kept in dir.
func Open(d conf.Dir, dir string) (*Inbox, error) {
	loc, err := locate.FromConf(d)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(dir, "pending"), 0o700); err != nil {
		return nil, fail.Temp(err)
	}
	pending, err := agent.Open(dir, true)
	if err != nil {
		return nil, fail.Temp(err)
	}
	return &Inbox{loc: loc, pending: pending, timeout: time.Minute, stores: map[string]*session.Client{}}, nil
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
	if _, err := c.Call(&rnaqp.Authenticate{Account: account, Password: password}); err != nil {
		var se *session.StatusError
		if errors.As(err, &se) && se.Status == rnaqp.ErrorNotAuthenticated {
			return 0, fail.Perm(fmt.Errorf("agent %s, account %s: %w", where, account, ErrAuth))
		}
		return 0, fail.Temp(fmt.Errorf("agent %s: %w", where, err))
	}
	n := 0
	for {
		pdu, err := c.Call(rnaqp.RetrieveAndClear{})
		if err != nil {
			return n, fail.Temp(fmt.Errorf("agent %s: %w", where, err))
		}
		got := pdu.Response.(*rnaqp.RetrieveAndClearOK).Notifications
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
}

// Pending lists the notifications not yet done with, oldest first.
func (b *Inbox) Pending() ([]agent.Entry, error) { return b.pending.List("pending", 1<<30) }

// Done drops a notification from the pending queue.
func (b *Inbox) Done(e agent.Entry) { b.pending.Remove("pending", []agent.Entry{e}) }

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

// call sends an MSRAP command to the notification's store, dropping the
// session on a transport error so that the next call dials again.
func (b *Inbox) call(e agent.Entry, cmd wire.Body) (*wire.PDU, error) {
	n := e.N.Notification
	c, err := b.store(n.StoreClear)
	if err != nil {
		return nil, err
	}
	pdu, err := c.Call(cmd)
	var se *session.StatusError
	switch {
	case errors.As(err, &se) && se.Status == msrap.ErrorNoSuchMessage:
		return nil, ErrGone
	case err != nil && !errors.As(err, &se):
		delete(b.stores, n.StoreClear.String())
		c.Close()
	}
	return pdu, err
}

// Retrieve fetches a part (msrap.All, msrap.HeadersOnly, ...) of a message.
func (b *Inbox) Retrieve(e agent.Entry, kind uint64) ([]byte, error) {
	var msg []byte
	for {
		pdu, err := b.call(e, &msrap.Retrieve{ID: e.N.Notification.ID, Type: kind, Offset: uint64(len(msg))})
		if err != nil {
			return nil, err
		}
		r := pdu.Response.(*msrap.RetrieveOK)
		msg = append(msg, r.Data...)
		if uint64(len(msg)) >= r.Size || len(r.Data) == 0 {
			if uint64(len(msg)) != r.Size {
				return nil, fmt.Errorf("retrieved %d of %d octets", len(msg), r.Size)
			}
			return msg, nil
		}
	}
}

// Size is the message's size: from the notification, else asked of the store.
func (b *Inbox) Size(e agent.Entry) (uint64, error) {
	if s := e.N.Notification.Size; s != nil {
		return *s, nil
	}
	pdu, err := b.call(e, &msrap.QuerySize{ID: e.N.Notification.ID})
	if err != nil {
		return 0, err
	}
	return pdu.Response.(*msrap.QuerySizeOK).Size, nil
}

// Silence tells the store the recipient has the message.
func (b *Inbox) Silence(e agent.Entry) error {
	_, err := b.call(e, &msrap.Silence{ID: e.N.Notification.ID})
	if errors.Is(err, ErrGone) {
		return nil
	}
	return err
}
