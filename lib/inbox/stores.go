package inbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"im2000/lib/agent"
	"im2000/lib/session"
	"im2000/lib/tlsconf"
	"im2000/lib/wire"
	"im2000/lib/wire/msrap"
	"im2000/lib/wire/rnasp"
)

// ErrStoreFailed is an entry not tried because its store already failed
// once in this Inbox's life (one run of fetch, one POP3 session): each
// store gets one chance, so that a store that is down or a tarpit costs a
// run one timeout, not one per notification.
var ErrStoreFailed = errors.New("failed earlier in this run; kept for the next")

// ErrTooSlow is a store that took longer than a retrieval's time
// (RetrieveTo), or than the Inbox's deadline (SetDeadline).
var ErrTooSlow = errors.New("took longer than it may (the timeout, and the size at the minimum rate, within the session's end)")

// store is the session with one store location (by its canonical form,
// locationKey), and whether it has used its one reopening.
type store struct {
	mu       sync.Mutex // one command at a time; held across a call
	name     string
	c        *session.Client
	peer     string // the chance key of the address c reached
	reopened bool   // a closed session was dialled again once: not again
}

func (s *store) close() {
	if s.c != nil {
		s.c.Close()
		s.c = nil
	}
}

// locationKey is a store location's canonical form: a domain lower-cased
// without a final dot, or the addresses with IPv4-mapped IPv6 ones made
// IPv4, each once, sorted. "A", "A A", "[::ffff:A]" and "Example.org."
// spell the same store as "A" and "example.org" do, and get one session
// and one chance.
func locationKey(l wire.ServiceLocation) string {
	if l.Domain != nil {
		return strings.TrimSuffix(strings.ToLower(l.String()), ".")
	}
	var as []string
	for _, a := range l.Literals {
		as = append(as, netip.AddrPortFrom(a.Addr().Unmap(), a.Port()).String())
	}
	slices.Sort(as)
	return strings.Join(slices.Compact(as), " ")
}

// groupKey is the group an entry is worked in by PerStore, and one of its
// chance keys: its location's canonical form.
func groupKey(e agent.Entry) string {
	return "location " + locationKey(e.N.Notification.StoreClear)
}

// chanceKeys are the names under which an entry's store has its one
// chance: the location's canonical form; the address a session reached is
// added when one is dialled, so that domains whose stores are one address
// share its chance too. A failure under any of them ends the chance of
// every entry that shares one: however the store is spelled, a tarpit
// costs a run one timeout. The sender's domain is not one of them: a
// domain may name several stores, and one of them down must not keep the
// others' messages.
func chanceKeys(e agent.Entry) []string {
	return []string{groupKey(e)}
}

// chanceGone returns the failure that ended the chance of any of keys.
func (b *Inbox) chanceGone(keys []string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, k := range keys {
		if err, ok := b.failedAt[k]; ok {
			return err
		}
	}
	return nil
}

// endChance records a store's failure under each of keys.
func (b *Inbox) endChance(keys []string, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, k := range keys {
		if _, ok := b.failedAt[k]; !ok && k != "" {
			b.failedAt[k] = err
		}
	}
}

// storeFor returns the session kept for a store location.
func (b *Inbox) storeFor(l wire.ServiceLocation) *store {
	key := locationKey(l)
	b.mu.Lock()
	defer b.mu.Unlock()
	s, ok := b.stores[key]
	if !ok {
		s = &store{name: key}
		b.stores[key] = s
	}
	return s
}

// SetDeadline sets when everything this Inbox does with stores must end
// (a POP3 session's lifetime): a call or retrieval still going then fails
// with ErrTooSlow, and ends its store's chance. The zero time is none.
func (b *Inbox) SetDeadline(t time.Time) {
	b.mu.Lock()
	b.until = t
	b.mu.Unlock()
}

// deadline is d from now, or the Inbox's deadline if that comes first.
func (b *Inbox) deadline(d time.Duration) time.Time {
	at := time.Now().Add(d)
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.until.IsZero() && b.until.Before(at) {
		return b.until
	}
	return at
}

// dialStore starts a session with a notification's store, all within
// one timeout and before deadline: over TLS at its storessl when it has
// one (a literal's certificate verified for the sender's domain, which
// binding has tied the store to), else at its storeclear: a domain's
// MSRAP server, TLS form first, or the first of its addresses that
// answers. A storessl that cannot be reached falls back to storeclear
// unless the sender's domain must use TLS (tlsrequire, or its store was
// reached over TLS before); one whose certificate does not verify never
// does. Cleartext where TLS is required is tlsconf.ErrDowngrade.
func (b *Inbox) dialStore(n *rnasp.Notification, sender string, deadline time.Time) (*session.Client, error) {
	if at := time.Now().Add(b.timeout); at.Before(deadline) {
		deadline = at
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	var sslErr error
	if n.StoreSSL != nil {
		c, err := b.dialLocation(ctx, *n.StoreSSL, sender, true)
		if err == nil || errors.Is(err, tlsconf.ErrBadCert) || errors.Is(err, tlsconf.ErrDowngrade) {
			return c, err
		}
		sslErr = fmt.Errorf("storessl %s: %w", n.StoreSSL, err)
	}
	c, err := b.dialLocation(ctx, n.StoreClear, sender, false)
	if err != nil && sslErr != nil {
		err = fmt.Errorf("%w; storeclear: %w", sslErr, err)
	}
	return c, err
}

// dialLocation dials one store location for a notification from sender's
// domain: a domain as session.Connect does (TLS form first, downgrades
// refused); literal addresses over TLS verified for sender, or in
// cleartext when sender's domain need not use TLS.
func (b *Inbox) dialLocation(ctx context.Context, l wire.ServiceLocation, sender string, overTLS bool) (*session.Client, error) {
	if l.Domain != nil {
		return session.Connect(ctx, b.loc, msrap.Protocol, l.String(), b.timeout)
	}
	if !overTLS {
		if why, required := b.loc.TLS.Required("msrap", sender); required {
			return nil, fmt.Errorf("%w: the store of %s is offered only in cleartext (%s), and %s", tlsconf.ErrDowngrade, sender, l, why)
		}
	}
	err := errors.New("no address")
	for _, a := range l.Literals {
		var c *session.Client
		var derr error
		if overTLS {
			var conn net.Conn
			if conn, derr = b.loc.DialTLS(ctx, "msrap", a.String(), sender); derr == nil {
				c = session.NewClient(conn, msrap.Protocol, b.timeout)
			}
		} else {
			c, derr = session.DialWhere(ctx, b.loc, msrap.Protocol, a.String(), b.timeout)
		}
		if derr == nil {
			return c, nil
		}
		if errors.Is(derr, tlsconf.ErrBadCert) {
			if why, required := b.loc.TLS.Required("msrap", sender); required {
				derr = fmt.Errorf("%w: %w, and %s", tlsconf.ErrDowngrade, derr, why)
			}
			return nil, derr
		}
		err = derr
	}
	return nil, err
}

// peerKey is the chance key of the address a session reached.
func peerKey(c *session.Client) string {
	ap, err := netip.ParseAddrPort(c.RemoteAddr())
	if err != nil {
		return "address " + c.RemoteAddr()
	}
	return "address " + netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()).String()
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
// the answer it calls for, T, before deadline.
//
// A session reused from an earlier call that the store has closed (idle
// sessions are closed by stores) is dialled again, once per store in this
// Inbox's life, and the command sent again; every MSRAP command a reader
// sends may be repeated. Any other transport or protocol failure, the
// failure of a session dialled for this call, or the deadline passing,
// ends the store's chance in this Inbox (chanceKeys): later calls for it
// fail at once with ErrStoreFailed. A timeout is never retried.
func call[T wire.Body](b *Inbox, e agent.Entry, cmd wire.Body, deadline time.Time) (T, error) {
	n := e.N.Notification
	var zero T
	sender, err := b.Sender(e)
	if err != nil {
		return zero, err // never a connection to a store that does not bind its sender
	}
	keys := chanceKeys(e)
	s := b.storeFor(n.StoreClear)
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		if err := b.chanceGone(append(keys, s.peer)); err != nil {
			s.close()
			return zero, fmt.Errorf("store %s %w (%v)", s.name, ErrStoreFailed, err)
		}
		left := time.Until(deadline)
		if left <= 0 {
			s.close()
			b.endChance(append(keys, s.peer), ErrTooSlow)
			return zero, ErrTooSlow
		}
		fresh := false
		if s.c == nil {
			c, err := b.dialStore(&n, sender.Domain, deadline)
			if err != nil {
				if !time.Now().Before(deadline) {
					err = fmt.Errorf("%w: %w", ErrTooSlow, err)
				}
				b.endChance(keys, err)
				return zero, err
			}
			s.c, s.peer, fresh = c, peerKey(c), true
			if err := b.chanceGone([]string{s.peer}); err != nil {
				s.close() // the address reached has failed already
				b.endChance(keys, err)
				return zero, fmt.Errorf("store %s %w (%v)", s.name, ErrStoreFailed, err)
			}
		}
		s.c.Timeout = min(b.timeout, left)
		cut := left < b.timeout // a timeout now is the deadline's
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
		if !fresh && !s.reopened && closedByPeer(err) {
			s.reopened = true
			continue
		}
		if cut && errors.Is(err, os.ErrDeadlineExceeded) {
			err = fmt.Errorf("%w: %w", ErrTooSlow, err)
		}
		b.endChance(append(keys, s.peer), err)
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

// PerStore calls f for each entry: the entries of one store (grouped by
// the canonical form of their location, locationKey) in their order, one after the other
// (over the one session with it), and different stores at once, at most
// MaxStoresAtOnce of them. It returns when every call has.
// i is the entry's index in entries.
//
// A panic in f is stopped in its goroutine: it is logged as an alert with
// its stack (lib/fail), and taken as that store's failure: the rest of
// its entries are not called. PerStore returns the indices of the entries
// whose call panicked or was not made, for the caller to count as kept
// for later; the other stores go on.
//
// So a store that is down or never answers costs its own entries one
// timeout (one chance per store) while the others go on: three tarpits
// cost a run about one timeout, not three.
func PerStore(entries []agent.Entry, f func(i int, e agent.Entry)) (notDone []int) {
	var order []string
	byStore := map[string][]int{}
	for i, e := range entries {
		key := groupKey(e)
		if _, ok := byStore[key]; !ok {
			order = append(order, key)
		}
		byStore[key] = append(byStore[key], i)
	}
	sem := make(chan struct{}, MaxStoresAtOnce)
	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, key := range order {
		wg.Add(1)
		sem <- struct{}{}
		go func(key string, idx []int) {
			defer func() {
				<-sem
				wg.Done()
			}()
			for k, i := range idx {
				if !callSafely(key, i, entries[i], f) {
					mu.Lock()
					notDone = append(notDone, idx[k:]...)
					mu.Unlock()
					return
				}
			}
		}(key, byStore[key])
	}
	wg.Wait()
	slices.Sort(notDone)
	return notDone
}

// callSafely calls f, and reports false if it panicked (with an alert).
func callSafely(key string, i int, e agent.Entry, f func(int, agent.Entry)) (ok bool) {
	defer func() {
		if v := recover(); v != nil {
			logPanic(&e.N.Notification, key, v)
			ok = false
		}
	}()
	f(i, e)
	return true
}
