package main

// The sender policy at login (lib/policy; DESIGN-NOTES.md, "Known and
// unknown senders"). POP3 cannot ask the user, so a held notification
// shows as a short notice message, written here from the notification
// alone: reading or deleting it never contacts the sender's store. A
// deleted notice is not shown again (the "noticed" mark); the notification
// stays held until the policy allows its sender (the user's policy file
// gets an allow line), and is then listed like any other.

import (
	"crypto/sha256"
	"fmt"
	"io"
	"strings"
	"time"

	"im2000/lib/addr"
	"im2000/lib/agent"
	"im2000/lib/inbox"
	"im2000/lib/trace"
	"im2000/lib/wire"
	"im2000/lib/wire/msrap"
)

// maxNotices bounds the notices listed at one login: a flood of held
// notifications costs a login at most this many notices and one more that
// counts the rest.
const maxNotices = 20

// screen applies the policy to the verified pending entries (after Bound)
// and to those held before. It returns the entries to list, and a notice
// for each held entry not yet noticed (at most maxNotices, and one notice
// counting the rest). Held entries are decided on the senders verified
// when they were held: no DNS per held entry per login; those released
// are checked again (Bound). A broken policy refuses the login (a
// temporary error): listing everything instead would be the read receipt
// the policy is written against.
func (c *config) screen(ib *inbox.Inbox, dir, user string, entries []agent.Entry) ([]agent.Entry, *notices, error) {
	pol, path, max, err := inbox.UserPolicy(c.conf, dir, user)
	if err != nil {
		return nil, nil, err
	}
	say := func(format string, a ...any) {
		logPolicy(ib.LogPrefix, fmt.Sprintf(format, a...))
	}
	out, err := ib.SortByPolicy(entries, pol, path, "a notice is in the maildrop", say)
	if err != nil {
		return nil, nil, err
	}
	held, err := ib.Held(int(max)) // expired and over-maxheld ones dropped, logged
	if err != nil {
		return nil, nil, err
	}
	released, still, err := ib.ReleaseByPolicy(held, pol, path, say)
	if err != nil {
		return nil, nil, err
	}
	out = append(out, ib.Bound(released, ib.LogPrefix)...)
	me, _ := c.conf.Me()
	keep := map[string]bool{}
	ns := &notices{held: map[string]agent.Entry{}, text: map[string][]byte{}}
	more := 0
	for _, h := range still {
		e := h.Entry
		keep[e.Name] = true
		if ib.Marked("noticed", e) {
			continue
		}
		if len(ns.entries) >= maxNotices {
			more++
			continue
		}
		ns.add(noticeEntry(e, "notice:"+e.Name), noticeText(e, h.Sender, user, me, path))
		ns.held["notice."+e.Name] = agent.Entry{Name: e.Name}
	}
	if more > 0 {
		// Its UIDL changes with the count: a client that kept an older
		// count sees the new one.
		name := fmt.Sprintf("more:%d", more)
		ns.add(noticeEntry(agent.Entry{Name: name, N: still[0].N}, "notice:"+name), moreText(more, user, me))
	}
	ib.PruneMarks("noticed", keep)
	return unique(out), ns, nil
}

// noticeEntry is a notice's own entry: a copy of the notification with no
// store location, so that it has no path to any store whatever code it
// reaches, and a message ID made from uid (the held entry's unique name),
// so that its UIDL (agent.Key) is its own, unique and the same at every
// login.
func noticeEntry(e agent.Entry, uid string) agent.Entry {
	ne := agent.Entry{Name: "notice." + strings.TrimPrefix(uid, "notice:"), N: e.N}
	ne.N.Notification.StoreClear = wire.ServiceLocation{}
	ne.N.Notification.StoreSSL = nil
	h := sha256.Sum256([]byte(uid))
	copy(ne.N.Notification.ID[:], h[:])
	return ne
}

func (ns *notices) add(ne agent.Entry, text []byte) {
	ns.entries = append(ns.entries, &entry{e: ne, size: uint64(len(text))})
	ns.text[ne.Name] = text
}

// cleanAddress reports whether a sender may be printed as it is in a
// notice's allow line: printable ASCII, no blanks, and it parses back to
// itself (lib/policy reads the line with lib/addr).
func cleanAddress(m addr.Mailbox) bool {
	s := m.String()
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	p, err := addr.Parse(s)
	return err == nil && p == m
}

// noticeText is the notice of one held notification, CRLF line ends, made
// of the notification's fields alone (escaped). The Subject does not carry
// the sender: an encoded word in a sender would decode there (to a bidi
// override, say); the body has it escaped. The allow line is printed only
// for a clean address; for others the notice points to the key.
func noticeText(e agent.Entry, sender addr.Mailbox, user, me, path string) []byte {
	n := e.N.Notification
	size := "not stated"
	if n.Size != nil {
		size = fmt.Sprintf("%d octets", *n.Size)
	}
	date := time.Unix(int64(e.N.Date), 0).UTC()
	esc := trace.Escape(sender.String())
	subject := "held: a message from " + esc
	if !cleanAddress(sender) || strings.Contains(esc, "=?") {
		subject = "held: a message from a sender shown in the notice"
	}
	lines := []string{
		"From: im2000-pop3d <MAILER-DAEMON@" + me + ">",
		"To: " + user,
		"Date: " + date.Format(time.RFC1123Z),
		"Subject: " + subject,
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
	}
	if cleanAddress(sender) {
		lines = append(lines, "  allow "+sender.String())
	} else {
		lines = append(lines, "  allow ADDRESS",
			"",
			"with the sender's address written exactly (it has characters shown",
			"escaped above; the key "+e.Name+" names it)")
	}
	lines = append(lines,
		"",
		"must be added to your sender policy ("+trace.Escape(path)+"): ask",
		"your administrator. Deleting this notice does not delete the message:",
		"it stays held, and this notice is not shown again.",
		"")
	return []byte(strings.Join(lines, "\r\n"))
}

// moreText is the notice counting the held notifications beyond
// maxNotices.
func moreText(more int, user, me string) []byte {
	lines := []string{
		"From: im2000-pop3d <MAILER-DAEMON@" + me + ">",
		"To: " + user,
		"Date: " + time.Now().UTC().Format(time.RFC1123Z),
		fmt.Sprintf("Subject: held: %d more messages", more),
		"MIME-Version: 1.0",
		"Content-Type: text/plain; charset=utf-8",
		"",
		fmt.Sprintf("%d more messages from senders your sender policy holds wait", more),
		fmt.Sprintf("for you; a notice of each is shown, %d at a time, when you have", maxNotices),
		"deleted the notices before them. Their stores have not been contacted.",
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
	if _, ok := w.notices.text[e.Name]; !ok {
		return w.mailbox.Silence(e)
	}
	if held, ok := w.notices.held[e.Name]; ok {
		return w.ib.Mark("noticed", held)
	}
	return nil // the count of the others: shown while there are others
}

func (w *withNotices) Done(e agent.Entry) {
	if _, ok := w.notices.text[e.Name]; !ok {
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
