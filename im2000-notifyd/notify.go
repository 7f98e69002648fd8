package main

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"im2000/lib/addr"
	"im2000/lib/fail"
	"im2000/lib/locate"
	"im2000/lib/session"
	"im2000/lib/store"
	"im2000/lib/wire"
	"im2000/lib/wire/rnasp"
)

// A worker sends one batch of one destination and records what became of
// it: it checks the batch against the sidecars (a silence or cancel by
// another process wins), sends one RNASP Notify, and writes each message's
// outcomes in one sidecar update as soon as the batch returns. Everything
// it does for a destination happens in its own goroutine, under its own
// deadline, so a slow or hostile agent holds up only its own recipients.

// Outcomes beyond the sidecar states: full leaves the state as it was and
// defers (the agent is there but cannot take it now).
type outcome struct {
	state store.Notification
	full  bool
}

func (o outcome) String() string {
	if o.full {
		return "full"
	}
	return o.state.String()
}

// work is one batch. kept go back into the schedule with their new due
// time; dropped are done with (silenced, failed for good, cancelled,
// expired).
func work(cfg *config, d string, batch []*entry) (kept, dropped []*entry) {
	defer func() {
		if p := recover(); p != nil {
			fail.Alert("%s", fail.Panicked("notifying "+d, p))
			// Nothing recorded: try again after a pause, as for any
			// temporary failure.
			kept, dropped = batch, nil
			for _, e := range batch {
				e.due = time.Now().Add(cfg.retryBase).UnixNano()
			}
		}
	}()
	send, dropped := check(batch, time.Now())
	if len(send) == 0 {
		return nil, dropped
	}
	out, rna := notify(cfg, d, send)
	k, dr := record(cfg, d, rna, send, out, time.Now())
	return k, append(dropped, dr...)
}

// check drops the entries the sidecars say are done with: a message gone
// (cancelled) or past its lifetime, or a recipient silenced or failed by
// another process since the entry was made.
func check(batch []*entry, now time.Time) (send, dropped []*entry) {
	for _, g := range byMessage(batch) {
		m := g[0].msg
		st, err := m.acct.Status(m.id)
		if err == nil && !exists(m) {
			err = store.ErrNoSuch
		}
		switch {
		case errors.Is(err, store.ErrNoSuch):
			dropped = append(dropped, g...)
			m.acct.Done(m.id)
			continue
		case err != nil:
			fail.Warn("%s/%s: %v", m.acct.Name, m.id, err)
			send = append(send, g...) // the record will fail too, and defer them
			continue
		case now.Unix() >= m.expires:
			fail.Warn("%s/%s: lifetime over, no more notifications", m.acct.Name, m.id)
			dropped = append(dropped, g...)
			m.acct.Done(m.id)
			continue
		}
		for _, e := range g {
			if int(e.index) >= len(st.Recipients) || st.Recipients[e.index].Notification.Final() {
				dropped = append(dropped, e)
			} else {
				send = append(send, e)
			}
		}
	}
	return send, dropped
}

// exists reports whether the message file is still there: Cancel unlinks it.
func exists(m *message) bool {
	msg, err := m.acct.Open(m.id)
	if err != nil {
		return !errors.Is(err, store.ErrNoSuch)
	}
	msg.Close()
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
		return all(store.NoService), domain
	case err != nil:
		fail.Warn("%s: %v", domain, err)
		return all(store.NoServer), domain
	}
	defer c.Close()
	rna := c.RemoteAddr()
	cmd := &rnasp.Notify{}
	for _, e := range batch {
		size := e.msg.size
		cmd.Notifications = append(cmd.Notifications, rnasp.Notification{StoreClear: cfg.location,
			Recipient: wire.FromAddr(addr.Mailbox{Local: e.local, Domain: domain}), ID: e.rid, Sender: e.msg.sender, Size: &size})
	}
	resp, err := session.Expect[*rnasp.NotifyOK](c, cmd)
	if err != nil {
		fail.Warn("%s (%s): %v", domain, rna, err)
		return all(callFailure(err)), rna
	}
	out := all(store.Notifying) // no results: all accepted
	if len(resp.Results) == 0 {
		return out, rna
	}
	if len(resp.Results) != len(batch) {
		fail.Warn("%s (%s): %d results for %d notifications", domain, rna, len(resp.Results), len(batch))
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

// record writes the outcomes into the sidecars, one update per message,
// never overwriting what happened meanwhile (a silence, a permanent
// state). Retries are timed from end, when the attempt was over.
func record(cfg *config, domain, rna string, batch []*entry, out []outcome, end time.Time) (kept, dropped []*entry) {
	oc := map[*entry]outcome{}
	for i, e := range batch {
		oc[e] = out[i]
	}
	for _, g := range byMessage(batch) {
		m := g[0].msg
		finished := false
		var gone []*entry
		err := m.acct.Update(m.id, func(_ *store.Envelope, st *store.Status) error {
			gone = gone[:0]
			for _, e := range g {
				rs := &st.Recipients[e.index]
				if rs.Notification.Final() {
					gone = append(gone, e)
					continue
				}
				o := oc[e]
				rs.Attempts++
				rs.Last = end
				if !o.full {
					rs.Notification = o.state
				}
				switch {
				case o.full:
					rs.Next = end.Add(cfg.backoff(rs.Attempts))
				case o.state == store.Notifying:
					rs.Next = end.Add(cfg.resend)
				case o.state.Final():
					rs.Next = time.Time{}
					gone = append(gone, e)
				default:
					rs.Next = end.Add(cfg.backoff(rs.Attempts))
				}
				e.state, e.due = rs.Notification, rs.Next.UnixNano()
			}
			finished = true
			for _, rs := range st.Recipients {
				if !rs.Notification.Final() {
					finished = false
				}
			}
			return nil
		})
		switch {
		case errors.Is(err, store.ErrNoSuch): // cancelled meanwhile
			dropped = append(dropped, g...)
			m.acct.Done(m.id)
			continue
		case err != nil:
			// The outcome could not be written (a full disk): nothing
			// changes on disk, so try again as after a temporary failure.
			fail.Warn("%s/%s: recording: %v", m.acct.Name, m.id, err)
			for _, e := range g {
				e.due = end.Add(cfg.retryBase).UnixNano()
			}
			kept = append(kept, g...)
			continue
		}
		isGone := map[*entry]bool{}
		for _, e := range gone {
			isGone[e] = true
		}
		for _, e := range g {
			if isGone[e] {
				dropped = append(dropped, e)
			} else {
				kept = append(kept, e)
			}
			fail.Warn("%s %s %s %s", m.id, addr.Mailbox{Local: e.local, Domain: domain}, rna, oc[e])
		}
		if finished {
			if err := m.acct.Done(m.id); err != nil {
				fail.Warn("%s/%s: %v", m.acct.Name, m.id, err)
			}
		}
	}
	return kept, dropped
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
