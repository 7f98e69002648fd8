package main

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"im2000/lib/addr"
	"im2000/lib/locate"
	"im2000/lib/session"
	"im2000/lib/store"
	"im2000/lib/tlsconf"
	"im2000/lib/wire"
	"im2000/lib/wire/rnasp"
)

// A worker sends one batch of one destination: it checks the batch against
// the sidecars (a silence or cancel by another process wins) and sends one
// RNASP Notify, in its own goroutine and under its own deadline, so a slow
// or hostile agent holds up only its own recipients. What came of it goes
// to the recorders (record.go), which write the sidecars.

// Outcomes beyond the sidecar states: full leaves the state as it was and
// defers (the agent is there but cannot take it now); untried is not an
// attempt at all (a batch of hand-offs cut short by SIGTERM: smarthost.go),
// and nothing is written.
type outcome struct {
	state   store.Notification
	full    bool
	untried bool
}

func (o outcome) String() string {
	if o.untried {
		return "untried"
	}
	if o.full {
		return "full"
	}
	return o.state.String()
}

// sent is a worker's report on its batch.
type sent struct {
	d        *destination
	entries  []*entry  // notified, with their outcomes
	out      []outcome // one per entry
	rna      string    // where they went, for the log
	end      time.Time // when the attempt was over: retries count from here
	slow     bool      // no agent (or no DNS answer): the destination may be a tarpit
	deferred []*entry  // their sidecar could not be read: due again later
	dropped  []*entry  // done with, found by the check
}

// work checks and sends one batch.
func work(cfg *config, d *destination, batch []*entry) (r sent) {
	defer func() {
		if p := recover(); p != nil {
			logPanic("notifying "+d.domain, p)
			// Nothing recorded: try again after a pause, as after any
			// temporary failure.
			r = sent{d: d, deferred: batch}
			for _, e := range batch {
				e.due = time.Now().Add(cfg.retryBase).UnixNano()
			}
		}
	}()
	r = sent{d: d}
	var send []*entry
	send, r.deferred, r.dropped = check(cfg, batch, time.Now())
	if len(send) > 0 {
		r.entries = send
		r.out, r.rna = notify(cfg, d.domain, send)
		r.end = time.Now()
		// No agent, or DNS that does not answer: both may hold a worker
		// for the whole timeout.
		r.slow = r.out[0].state == store.NoServer || r.out[0].state == store.NoService
	}
	return r
}

// check sorts a batch by what the disk says: a message gone (cancelled) or
// past its lifetime, or a recipient silenced or failed by another process
// since the entry was made, is dropped; a message whose sidecar cannot be
// read is deferred, backing off, rather than notified blind.
func check(cfg *config, batch []*entry, now time.Time) (send, deferred, dropped []*entry) {
	for _, g := range byMessage(batch) {
		m := g[0].msg
		if now.Unix() >= m.expires {
			logExpired(m.acct.Name, m.id)
			dropped = append(dropped, g...)
			dequeue(m.acct, m.id)
			continue
		}
		st, err := m.acct.Status(m.id)
		if err == nil && !m.acct.Committed(m.id) {
			err = store.ErrNoSuch // Cancel unlinks the message first
		}
		switch {
		case errors.Is(err, store.ErrNoSuch):
			dropped = append(dropped, g...)
			dequeue(m.acct, m.id)
			continue
		case err == nil && len(st.Recipients) <= int(maxIndex(g)):
			err = errMismatch
		}
		if err != nil {
			logUnreadable(m.acct.Name, m.id, err)
			due := now.Add(cfg.backoff(int64(m.trouble.Add(1)))).UnixNano()
			for _, e := range g {
				e.due = due
			}
			deferred = append(deferred, g...)
			continue
		}
		m.trouble.Store(0)
		for _, e := range g {
			if st.Recipients[e.index].Notification.Final() {
				dropped = append(dropped, e)
			} else {
				send = append(send, e)
			}
		}
		if allFinal(st) {
			dequeue(m.acct, m.id)
		}
	}
	return send, deferred, dropped
}

func maxIndex(g []*entry) int32 {
	var n int32
	for _, e := range g {
		n = max(n, e.index)
	}
	return n
}

func allFinal(st *store.Status) bool {
	for _, rs := range st.Recipients {
		if !rs.Notification.Final() {
			return false
		}
	}
	return true
}

// byMessage groups a batch's entries by message, in order of first
// appearance.
func byMessage(batch []*entry) [][]*entry {
	idx := map[*message]int{}
	var groups [][]*entry
	for _, e := range batch {
		i, ok := idx[e.msg]
		if !ok {
			i = len(groups)
			idx[e.msg] = i
			groups = append(groups, nil)
		}
		groups[i] = append(groups[i], e)
	}
	return groups
}

// notify sends the batch to the domain's agent: one outcome per entry, and
// where it went (the agent's address, or the domain when none was reached).
func notify(cfg *config, domain string, batch []*entry) ([]outcome, string) {
	all := func(state store.Notification) []outcome {
		out := make([]outcome, len(batch))
		for i := range out {
			out[i] = outcome{state: state}
		}
		return out
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.timeout)
	defer cancel()
	c, err := session.Connect(ctx, cfg.loc, rnasp.Protocol, domain, cfg.timeout)
	switch {
	case errors.Is(err, locate.ErrBadDomain):
		return all(store.BadDomain), domain
	case errors.Is(err, locate.ErrNoService):
		if cfg.smarthost != nil { // smarthost.go
			return cfg.smarthost.handOff(cfg, domain, batch)
		}
		return all(store.NoService), domain
	case errors.Is(err, locate.ErrNoAnswer):
		// DNS did not answer: noservice (DESIGN.md section 3), retried,
		// and never the smarthost, which takes only a domain shown to
		// publish no IM2000 service: an outage, or whoever drops a
		// datagram, would otherwise send private mail over SMTP.
		logUnreachable(domain, err)
		return all(store.NoService), domain
	case errors.Is(err, tlsconf.ErrDowngrade):
		logTLSRefused(domain, err)
		return all(store.TLSDowngrade), domain
	case errors.Is(err, tlsconf.ErrBadCert):
		logTLSRefused(domain, err)
		return all(store.TLSBadCert), domain
	case err != nil:
		logUnreachable(domain, err)
		return all(store.NoServer), domain
	}
	defer c.Close()
	rna := c.RemoteAddr()
	cmd := &rnasp.Notify{}
	for _, e := range batch {
		size := e.msg.size
		cmd.Notifications = append(cmd.Notifications, rnasp.Notification{StoreClear: cfg.location, StoreSSL: cfg.ssl,
			Recipient: wire.FromAddr(addr.Mailbox{Local: e.local, Domain: domain}), ID: e.rid, Sender: e.msg.sender, Size: &size})
	}
	resp, err := session.Expect[*rnasp.NotifyOK](c, cmd)
	if err != nil {
		logNotifyFailed(domain, rna, err)
		return all(callFailure(err)), rna
	}
	out := all(store.Notifying) // no results: all accepted
	if len(resp.Results) == 0 {
		return out, rna
	}
	if len(resp.Results) != len(batch) {
		logBadResults(domain, rna, len(resp.Results), len(batch))
		return all(store.ProtocolError), rna
	}
	for i, res := range resp.Results {
		switch res {
		case rnasp.Accepted:
		case rnasp.NoUser:
			out[i].state = store.NoUser
		case rnasp.Full:
			out[i].full = true
		case rnasp.Refused:
			out[i].state = store.Refused
		default:
			out[i].state = store.ProtocolError
		}
	}
	return out, rna
}

// callFailure says what a failed Notify means: a bad answer is a protocol
// error; an agent that is busy (errorserviceshutdown), silent past the
// deadline or gone mid-session is no server, as one that cannot be reached.
func callFailure(err error) store.Notification {
	var se *session.StatusError
	switch {
	case errors.Is(err, session.ErrProtocol):
		return store.ProtocolError
	case errors.As(err, &se) && se.Status == rnasp.Protocol.Status.Shutdown:
		return store.NoServer
	case errors.As(err, &se):
		return store.ProtocolError
	default:
		return store.NoServer
	}
}

// backoff doubles per attempt from retrybase up to retrymax, with jitter
// of ±50% so that retries from many messages do not come in waves.
func (c *config) backoff(attempts int64) time.Duration {
	d := c.retryBase
	for i := int64(1); i < attempts && d < c.retryMax; i++ {
		d *= 2
	}
	d = min(d, c.retryMax)
	return time.Duration(float64(d) * (0.5 + rand.Float64()))
}
