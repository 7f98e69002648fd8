package main

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"im2000/lib/conf"
	"im2000/lib/fail"
	"im2000/lib/msgid"
	"im2000/lib/remote"
	"im2000/lib/store"
)

// The sender's verbs (issue 17): --cancel and --resend act on one message;
// --queue summarises what waits, like qmail-qstat and mailq.

// act runs --cancel or --resend on id, locally or at the remote store
// (MSOAP Cancel, and Resend, im2000's extension of MSOAP).
func act(p *printer, c conf.Dir, account, verb, idText string) error {
	id, err := msgid.Parse(idText)
	if err != nil {
		return fail.Perm(fmt.Errorf("%q: %v", idText, err))
	}
	var (
		cancel func(msgid.ID) error
		resend func(msgid.ID) (store.Resent, error)
	)
	if isRemote, err := remote.Configured(c); err != nil {
		return err
	} else if isRemote {
		rs, err := remote.Dial(c, account)
		if err != nil {
			return err
		}
		defer rs.Close()
		cancel, resend = rs.Cancel, rs.Resend
	} else {
		a, err := localAccount(c, account)
		if err != nil {
			return err
		}
		floor, err := store.ResendFloor(c)
		if err != nil {
			return err
		}
		cancel = a.Cancel
		resend = func(id msgid.ID) (store.Resent, error) { return a.Resend(id, time.Now(), floor) }
	}
	switch verb {
	case "cancel":
		err = cancel(id)
		if err == nil {
			p.line("cancelled " + id.String())
		}
	default:
		var r store.Resent
		r, err = resend(id)
		if errors.Is(err, store.ErrFinished) {
			// The store says only that nobody is left (a remote one
			// answers Recipients 0): a post to lists alone had none.
			return fail.Perm(fmt.Errorf("%s: nobody to notify: every recipient has silenced or failed for good, or the message went to lists only (read from the list, never notified)", idText))
		}
		if err == nil {
			line := fmt.Sprintf("resending %s to %d recipients", id, r.Recipients)
			if r.Held > 0 {
				// Said, so that a sender who sees nothing happen knows why.
				line += fmt.Sprintf("; %d of them not before %s (the store's resendfloor after their last notification)",
					r.Held, r.Until.UTC().Format(time.RFC3339))
			}
			p.line(line)
		}
	}
	if errors.Is(err, store.ErrNoSuch) || errors.Is(err, remote.ErrNoSuch) {
		return fail.Perm(fmt.Errorf("%s: no such message in the archive of %s", idText, account))
	}
	return err
}

func (p *printer) line(s string) { fmt.Fprintln(p.w, s) }

func localAccount(c conf.Dir, account string) (*store.Account, error) {
	root, err := c.Store()
	if err != nil {
		return nil, err
	}
	st, err := store.Open(root)
	if err != nil {
		return nil, err
	}
	return st.Account(account)
}

// queueView is --queue's summary of the messages with recipients still to
// notify.
type queueView struct {
	Messages     int                     `json:"messages"`
	Recipients   int                     `json:"recipients"`
	States       map[string]int          `json:"states"`
	Destinations []destView              `json:"destinations"`
	Oldest       *oldestView             `json:"oldest,omitempty"`
	NextAttempt  *time.Time              `json:"next_attempt,omitempty"` // unknown for a remote store
	byDomain     map[string]*destView    // building Destinations
	seen         map[string]*messageView // the messages counted
}

type destView struct {
	Domain      string     `json:"domain"`
	Recipients  int        `json:"recipients"`
	NextAttempt *time.Time `json:"next_attempt,omitempty"`
}

type oldestView struct {
	ID        string    `json:"id"`
	Submitted time.Time `json:"submitted"`
	Expires   time.Time `json:"expires,omitzero"`
	Asked     bool      `json:"expires_asked,omitempty"` // as messageView's ExpiresAsked
}

// add counts the recipients of v that the store still notifies.
func (q *queueView) add(v *messageView) {
	counted := false
	for _, r := range v.Recipients {
		if isFinal(r.Notification) {
			continue
		}
		if !counted {
			counted = true
			q.Messages++
			if q.Oldest == nil || v.Submitted.Before(q.Oldest.Submitted) {
				q.Oldest = &oldestView{ID: v.ID, Submitted: v.Submitted, Expires: v.Expires, Asked: v.ExpiresAsked}
			}
		}
		q.Recipients++
		q.States[r.Notification]++
		domain := r.Address[strings.LastIndexByte(r.Address, '@')+1:]
		d := q.byDomain[domain]
		if d == nil {
			d = &destView{Domain: domain}
			q.byDomain[domain] = d
		}
		d.Recipients++
		if r.Next != nil {
			if d.NextAttempt == nil || r.Next.Before(*d.NextAttempt) {
				d.NextAttempt = r.Next
			}
			if q.NextAttempt == nil || r.Next.Before(*q.NextAttempt) {
				q.NextAttempt = r.Next
			}
		}
	}
}

func newQueueView() *queueView {
	return &queueView{States: map[string]int{}, Destinations: []destView{}, byDomain: map[string]*destView{}}
}

func (q *queueView) finish() {
	for _, d := range q.byDomain {
		q.Destinations = append(q.Destinations, *d)
	}
	sort.Slice(q.Destinations, func(i, j int) bool {
		if q.Destinations[i].Recipients != q.Destinations[j].Recipients {
			return q.Destinations[i].Recipients > q.Destinations[j].Recipients
		}
		return q.Destinations[i].Domain < q.Destinations[j].Domain
	})
}

// queue prints the summary: counts, then a line per state and per
// destination, most recipients first.
func (p *printer) queue(q *queueView) error {
	q.finish()
	if p.json {
		return p.encode(q)
	}
	p.row("messages", strconv.Itoa(q.Messages))
	p.row("recipients", strconv.Itoa(q.Recipients))
	for n := store.Unprocessed; n <= store.LastNotification; n++ {
		if c := q.States[n.String()]; c > 0 {
			p.row("state", n.String(), strconv.Itoa(c))
		}
	}
	for _, d := range q.Destinations {
		p.row("destination", d.Domain, strconv.Itoa(d.Recipients), "next", p.time(d.NextAttempt))
	}
	if q.Oldest != nil {
		sub := q.Oldest.Submitted
		p.row("oldest", q.Oldest.ID, "submitted", p.time(&sub), "expires", p.expiry(q.Oldest.Expires, q.Oldest.Asked))
	}
	p.row("next", p.time(q.NextAttempt))
	return nil
}

// timeOrNone is p.time for a time that may be unknown (zero).
func (p *printer) timeOrNone(t *time.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	return p.time(t)
}

// expiry is an expiry for the text views: "-" when unknown, and with a
// trailing "*" when it is the lifetime asked of a remote store, not one a
// store reported (im2000-status(1)).
func (p *printer) expiry(t time.Time, asked bool) string {
	s := p.timeOrNone(&t)
	if asked && !t.IsZero() {
		s += "*"
	}
	return s
}

// isFinal reports whether a notification state, by name, will not change
// by itself.
func isFinal(name string) bool {
	for n := store.Unprocessed; n <= store.LastNotification; n++ {
		if n.String() == name {
			return n.Final()
		}
	}
	return false
}

// list prints views as rows, or with summary as the queue summary.
func (p *printer) list(views []*messageView, summary bool) error {
	if !summary {
		return p.messages(views)
	}
	q := newQueueView()
	for _, v := range views {
		q.add(v)
	}
	return p.queue(q)
}
