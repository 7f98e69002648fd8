package main

// The sender policy at login (lib/policy; DESIGN-NOTES.md, "Known and
// unknown senders"). POP3 cannot ask the user, so a held notification
// shows as a short notice message, written here from the notification
// alone: reading or deleting it never contacts the sender's store. A
// deleted notice is not shown again (the "noticed" mark); the notification
// stays held until the policy allows its sender (the user's policy file
// gets an allow line), and is then listed like any other.

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"im2000/lib/agent"
	"im2000/lib/fail"
	"im2000/lib/inbox"
	"im2000/lib/policy"
	"im2000/lib/trace"
	"im2000/lib/wire"
	"im2000/lib/wire/msrap"
)

// policyPath is the user's policy: senderpolicy in the user's state
// directory, else the site's senderpolicy setting.
func (c *config) policyPath(dir string) string {
	own := filepath.Join(dir, "senderpolicy")
	if _, err := os.Lstat(own); errors.Is(err, fs.ErrNotExist) {
		return c.conf.Path("senderpolicy")
	}
	return own
}

// screen applies the policy to the verified pending entries (after Bound)
// and to those held before. It returns the entries to list, and a notice
// for each held entry not yet noticed. A broken policy refuses the login
// (a temporary error): listing everything instead would be the read
// receipt the policy is written against.
func (c *config) screen(ib *inbox.Inbox, dir, user string, entries []agent.Entry) ([]agent.Entry, *notices, error) {
	path := c.policyPath(dir)
	pol, err := policy.Load(path)
	if err != nil {
		return nil, nil, fail.Temp(fmt.Errorf("sender policy: %v (fix it: %s cannot read mail while it is broken)", err, user))
	}
	held, err := ib.Held()
	if err != nil {
		return nil, nil, fail.Temp(err)
	}
	say := func(format string, a ...any) {
		fail.Warn("%s", trace.Escape(ib.LogPrefix+fmt.Sprintf(format, a...)))
	}
	var out, still []agent.Entry
	for _, e := range held {
		n := e.N.Notification
		s, err := ib.Sender(e)
		if err != nil {
			still = append(still, e) // checked again next login; held meanwhile
			continue
		}
		switch m := pol.Decide(s); m.Verdict {
		case policy.Fetch:
			if err := ib.Release(e); err != nil {
				return nil, nil, err
			}
			say("released %s from %s at %s: allowed by %s line %d", e.Name, n.Sender, n.StoreClear, path, m.Line)
			out = append(out, e)
		case policy.Deny:
			if err := ib.DropHeld(e); err != nil {
				return nil, nil, err
			}
			say("dropped held %s from %s at %s, not retrieved: denied by %s line %d", e.Name, n.Sender, n.StoreClear, path, m.Line)
		default:
			still = append(still, e)
		}
	}
	for _, e := range entries {
		n := e.N.Notification
		s, err := ib.Sender(e)
		if err != nil {
			out = append(out, e) // Bound kept it; retrieval checks again
			continue
		}
		switch m := pol.Decide(s); m.Verdict {
		case policy.Fetch:
			out = append(out, e)
		case policy.Hold:
			if err := ib.Hold(e); err != nil {
				return nil, nil, err
			}
			say("held %s from %s at %s, not retrieved (%s line %d): a notice is in the maildrop", e.Name, n.Sender, n.StoreClear, path, m.Line)
			still = append(still, e)
		case policy.Deny:
			ib.Done(e)
			say("dropped %s from %s at %s, not retrieved: denied by %s line %d", e.Name, n.Sender, n.StoreClear, path, m.Line)
		}
	}
	me, _ := c.conf.Me()
	keep := map[string]bool{}
	ns := &notices{held: map[string]agent.Entry{}, text: map[string][]byte{}}
	for _, e := range still {
		if keep[e.Name] {
			continue // held again from the pending queue: one notice
		}
		keep[e.Name] = true
		if ib.Marked("noticed", e) {
			continue
		}
		s, err := ib.Sender(e)
		if err != nil {
			continue
		}
		text := noticeText(e, s.String(), user, me, path)
		// The notice's own entry: a copy of the notification without a
		// store location, so that it has a UIDL of its own and no path
		// to any store, whatever code it reaches.
		ne := agent.Entry{Name: "notice." + e.Name, N: e.N}
		ne.N.Notification.StoreClear = wire.ServiceLocation{}
		ns.entries = append(ns.entries, &entry{e: ne, size: uint64(len(text))})
		ns.held[ne.Name] = agent.Entry{Name: e.Name}
		ns.text[ne.Name] = text
	}
	ib.PruneMarks("noticed", keep)
	return unique(out), ns, nil
}

// noticeText is the notice of one held notification, CRLF line ends, made
// of the notification's fields alone (escaped).
func noticeText(e agent.Entry, sender, user, me, path string) []byte {
	n := e.N.Notification
	size := "not stated"
	if n.Size != nil {
		size = fmt.Sprintf("%d octets", *n.Size)
	}
	date := time.Unix(int64(e.N.Date), 0).UTC()
	esc := trace.Escape(sender)
	lines := []string{
		"From: im2000-pop3d <MAILER-DAEMON@" + me + ">",
		"To: " + user,
		"Date: " + date.Format(time.RFC1123Z),
		"Subject: held: a message from " + esc,
		"Message-ID: <held." + e.Name + "@" + me + ">",
		"MIME-Version: 1.0",
		"Content-Type: text/plain; charset=utf-8",
		"",
		"A message waits for you from a sender your sender policy holds:",
		"",
		"  sender:   " + esc + " (verified: its domain publishes the store)",
		"  size:     " + size,
		"  notified: " + date.Format(time.RFC3339),
		"  store:    " + trace.Escape(n.StoreClear.String()),
		"  key:      " + e.Name,
		"",
		"Its store has not been contacted: it does not know that this",
		"notification reached you. To receive the message, and later mail",
		"from this sender, the line",
		"",
		"  allow " + esc,
		"",
		"must be added to your sender policy (" + trace.Escape(path) + "): ask",
		"your administrator. Deleting this notice does not delete the message:",
		"it stays held, and this notice is not shown again.",
		"",
	}
	return []byte(strings.Join(lines, "\r\n"))
}

// notices are the session's notices of held notifications.
type notices struct {
	entries []*entry
	held    map[string]agent.Entry // the held entries (Name alone), by notice name
	text    map[string][]byte
}

// wrap lists the notices after the maildrop's messages, and returns the
// mailbox that serves them.
func (ns *notices) wrap(ib *inbox.Inbox, drop []*entry) (mailbox, []*entry, error) {
	if len(ns.entries) == 0 {
		return ib, drop, nil
	}
	return &withNotices{mailbox: ib, ib: ib, notices: ns}, append(drop, ns.entries...), nil
}

// withNotices is the session's mailbox with the notices: retrieving a
// notice writes its text, silencing it marks its notification noticed;
// neither reaches a store.
type withNotices struct {
	mailbox
	ib      *inbox.Inbox
	notices *notices
}

func (w *withNotices) RetrieveTo(e agent.Entry, kind uint64, out io.Writer) (int64, error) {
	text, ok := w.notices.text[e.Name]
	if !ok {
		return w.mailbox.RetrieveTo(e, kind, out)
	}
	if kind == msrap.HeadersOnly {
		head, _, _ := strings.Cut(string(text), "\r\n\r\n")
		text = []byte(head + "\r\n")
	}
	n, err := out.Write(text)
	return int64(n), err
}

func (w *withNotices) Silence(e agent.Entry) error {
	if held, ok := w.notices.held[e.Name]; ok {
		return w.ib.Mark("noticed", held)
	}
	return w.mailbox.Silence(e)
}

func (w *withNotices) Done(e agent.Entry) {
	if _, ok := w.notices.held[e.Name]; !ok {
		w.mailbox.Done(e)
	}
}

// unique drops repeated entries (a held one released, and a re-send of it
// in the pending queue under the same name), keeping the first.
func unique(entries []agent.Entry) []agent.Entry {
	seen := map[string]bool{}
	var out []agent.Entry
	for _, e := range entries {
		if !seen[e.Name] {
			seen[e.Name] = true
			out = append(out, e)
		}
	}
	return out
}
