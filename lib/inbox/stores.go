package inbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"

	"im2000/lib/agent"
	"im2000/lib/session"
	"im2000/lib/wire"
	"im2000/lib/wire/msrap"
)

// ErrStoreFailed is an entry not tried because its store already failed
// once in this Inbox's life (one run of fetch, one POP3 session): each
// store gets one chance, so that a store that is down or a tarpit costs a
// run one timeout, not one per notification.
var ErrStoreFailed = errors.New("failed earlier in this run; kept for the next")

// store is the session with one store location, and whether the store
// has had its chance.
type store struct {
	mu     sync.Mutex // one command at a time; held across a call
	name   string
	c      *session.Client
	failed error // the first transport failure, after which no more tries
}

func (s *store) close() {
	if s.c != nil {
		s.c.Close()
		s.c = nil
	}
}

// storeFor returns the state kept for a store location.
func (b *Inbox) storeFor(l wire.ServiceLocation) *store {
	key := l.String()
	b.mu.Lock()
	defer b.mu.Unlock()
	s, ok := b.stores[key]
	if !ok {
		s = &store{name: key}
		b.stores[key] = s
	}
	return s
}

// dialStore starts a session with a store: its domain's MSRAP server, or
// the first of its addresses that answers, all within one timeout.
func (b *Inbox) dialStore(l wire.ServiceLocation) (*session.Client, error) {
	ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
	defer cancel()
	if l.Domain != nil {
		return session.DialWhere(ctx, b.loc, msrap.Protocol, l.String(), b.timeout)
	}
	err := errors.New("no address")
	for _, a := range l.Literals {
		c, derr := session.DialWhere(ctx, b.loc, msrap.Protocol, a.String(), b.timeout)
		if derr == nil {
			return c, nil
		}
		err = derr
	}
	return nil, err
}

// closedByPeer is a session the store had closed (end of file, reset, a
// broken pipe), as opposed to one that timed out.
func closedByPeer(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return false
	}
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// call sends an MSRAP command to the notification's store and returns
// the answer it calls for, T.
//
// A session reused from an earlier call that the store has closed (idle
// sessions are closed by stores) is dialled again once and the command
// sent again; every MSRAP command a reader sends may be repeated. Any other
// transport or protocol failure, or the failure of a session dialled for
// this call, ends the store's chance in this Inbox: later calls for it
// fail at once with ErrStoreFailed. A timeout is never retried.
func call[T wire.Body](b *Inbox, e agent.Entry, cmd wire.Body) (T, error) {
	n := e.N.Notification
	var zero T
	if _, err := b.Sender(e); err != nil {
		return zero, err // never a connection to a store that does not bind its sender
	}
	s := b.storeFor(n.StoreClear)
	s.mu.Lock()
	defer s.mu.Unlock()
	for reopened := false; ; reopened = true {
		if s.failed != nil {
			return zero, fmt.Errorf("store %s %w (%v)", s.name, ErrStoreFailed, s.failed)
		}
		fresh := false
		if s.c == nil {
			c, err := b.dialStore(n.StoreClear)
			if err != nil {
				s.failed = err
				return zero, err
			}
			s.c, fresh = c, true
		}
		r, err := session.Expect[T](s.c, cmd)
		var se *session.StatusError
		switch {
		case err == nil:
			return r, nil
		case errors.As(err, &se) && se.Status == msrap.ErrorNoSuchMessage:
			return r, ErrGone
		case errors.As(err, &se):
			return r, err
		}
		s.close()
		if !fresh && !reopened && closedByPeer(err) {
			continue
		}
		s.failed = err
		return r, err
	}
}

// dropSession ends the session with a store whose answer leaves it in
// doubt, without ending the store's chance: the next call dials again.
func (b *Inbox) dropSession(e agent.Entry) {
	s := b.storeFor(e.N.Notification.StoreClear)
	s.mu.Lock()
	s.close()
	s.mu.Unlock()
}

// MaxStoresAtOnce bounds the stores PerStore works at once.
const MaxStoresAtOnce = 8

// PerStore calls f for each entry: the entries of one store location in
// their order, one after the other (over the one session with it), and
// different stores at once, at most MaxStoresAtOnce of them. It returns
// when every call has. i is the entry's index in entries. A panic in f is
// carried over to PerStore's caller, once the other calls have returned,
// so that the caller's own recover (a POP3 session's) sees it.
//
// So a store that is down or never answers costs its own entries one
// timeout (one chance per store) while the others go on: three tarpits
// cost a run about one timeout, not three.
func PerStore(entries []agent.Entry, f func(i int, e agent.Entry)) {
	var order []string
	byStore := map[string][]int{}
	for i, e := range entries {
		key := e.N.Notification.StoreClear.String()
		if _, ok := byStore[key]; !ok {
			order = append(order, key)
		}
		byStore[key] = append(byStore[key], i)
	}
	sem := make(chan struct{}, MaxStoresAtOnce)
	var wg sync.WaitGroup
	var once sync.Once
	var panicked any
	for _, key := range order {
		wg.Add(1)
		sem <- struct{}{}
		go func(idx []int) {
			defer func() {
				if v := recover(); v != nil {
					once.Do(func() { panicked = v })
				}
				<-sem
				wg.Done()
			}()
			for _, i := range idx {
				f(i, entries[i])
			}
		}(byStore[key])
	}
	wg.Wait()
	if panicked != nil {
		panic(panicked)
	}
}
