package main

import (
	"errors"
	"sync"
	"time"

	"im2000/lib/addr"
	"im2000/lib/store"
)

// Recorders write outcomes into the sidecars. Each message belongs to one
// recorder (by its identifier), which takes whatever outcomes have come in
// for it and writes them in one sidecar update, so a message to a thousand
// domains is not rewritten once per domain, and no worker waits on a
// sidecar's lock or fsync while its destination could go on. A recorder
// never overwrites what happened meanwhile (a silence, a permanent state).

// recorders is the number of recorders: sidecar updates are fsync-bound,
// and a few in parallel keep the disk busy.
const recorders = 4

// result is one recipient's outcome, on its way to the sidecar.
type result struct {
	e      *entry
	domain string
	rna    string
	out    outcome
	end    time.Time
}

// recorded is what a recorder hands back to the scheduler: entries to
// file again with their new due time, and entries done with.
type recorded struct {
	kept    []result
	dropped []*entry
}

// recorder is one recorder's in-tray: the scheduler appends and never
// waits, the recorder takes everything there each time round.
type recorder struct {
	mu   sync.Mutex
	in   []result
	wake chan struct{}
}

func (r *recorder) put(rs []result) {
	r.mu.Lock()
	r.in = append(r.in, rs...)
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *recorder) run(cfg func() *config, out chan<- recorded) {
	for range r.wake {
		r.mu.Lock()
		rs := r.in
		r.in = nil
		r.mu.Unlock()
		if len(rs) > 0 {
			out <- recordAll(cfg(), rs)
		}
	}
}

// recordAll writes the results, one update per message.
func recordAll(cfg *config, rs []result) (done recorded) {
	groups := map[*message][]result{}
	var order []*message
	for _, r := range rs {
		if groups[r.e.msg] == nil {
			order = append(order, r.e.msg)
		}
		groups[r.e.msg] = append(groups[r.e.msg], r)
	}
	for _, m := range order {
		k, d := recordMessage(cfg, m, groups[m])
		done.kept = append(done.kept, k...)
		done.dropped = append(done.dropped, d...)
	}
	return done
}

// recordMessage writes one message's results. A panic here is stopped
// like a worker's: the results are kept and tried again later.
func recordMessage(cfg *config, m *message, rs []result) (kept []result, dropped []*entry) {
	defer func() {
		if p := recover(); p != nil {
			logPanic("recording "+m.acct.Name+"/"+m.id.String(), p)
			kept, dropped = rs, nil
			for _, r := range rs {
				r.e.due = time.Now().Add(cfg.retryBase).UnixNano()
			}
		}
	}()
	// Untried (smarthost.go, at SIGTERM): as it was, due again later.
	var tried []result
	for _, r := range rs {
		if r.out.untried {
			r.e.due = r.end.Add(cfg.retryBase).UnixNano()
			kept = append(kept, r)
		} else {
			tried = append(tried, r)
		}
	}
	if rs = tried; len(rs) == 0 {
		return kept, nil
	}
	type change struct {
		state store.Notification
		due   int64
		gone  bool
	}
	changes := make([]change, len(rs))
	finished := false
	err := m.acct.Update(m.id, func(_ *store.Envelope, st *store.Status) error {
		for i, r := range rs {
			rcpt := &st.Recipients[r.e.index]
			if rcpt.Notification.Final() {
				changes[i] = change{gone: true}
				continue
			}
			o := r.out
			rcpt.Attempts++
			rcpt.Last = r.end
			if !o.full {
				rcpt.Notification = o.state
			}
			switch {
			case o.full:
				rcpt.Next = r.end.Add(cfg.backoff(rcpt.Attempts))
			case o.state == store.Notifying:
				rcpt.Next = r.end.Add(cfg.resend)
			case o.state.Final():
				rcpt.Next = time.Time{}
			default:
				rcpt.Next = r.end.Add(cfg.backoff(rcpt.Attempts))
			}
			changes[i] = change{state: rcpt.Notification, due: rcpt.Next.UnixNano(), gone: rcpt.Notification.Final()}
		}
		finished = allFinal(st)
		return nil
	})
	switch {
	case errors.Is(err, store.ErrNoSuch): // cancelled meanwhile
		dequeue(m.acct, m.id)
		for _, r := range rs {
			dropped = append(dropped, r.e)
		}
		return kept, dropped
	case err != nil:
		// Not written (a full disk, a broken sidecar): nothing changes on
		// disk, so the recipients are tried again, backing off.
		logNotRecorded(m.acct.Name, m.id, err)
		due := time.Now().Add(cfg.backoff(int64(m.trouble.Add(1)))).UnixNano()
		for _, r := range rs {
			r.e.due = due
		}
		return append(kept, rs...), nil
	}
	m.trouble.Store(0)
	for i, r := range rs {
		c := changes[i]
		if c.gone {
			dropped = append(dropped, r.e)
		} else {
			r.e.state, r.e.due = c.state, c.due
			kept = append(kept, r)
		}
		logAttempt(m.id, addr.Mailbox{Local: r.e.local, Domain: r.domain}, r.rna, r.out)
	}
	if finished {
		dequeue(m.acct, m.id)
	}
	return kept, dropped
}
