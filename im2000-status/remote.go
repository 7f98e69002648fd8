package main

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"

	"im2000/lib/conf"
	"im2000/lib/fail"
	"im2000/lib/msgid"
	"im2000/lib/remote"
	"im2000/lib/store"
)

// remoteView builds a message's view from MSOAP Track: the store tells
// each recipient's delivery status; attempts and times stay unknown.
func remoteView(rs *remote.Store, sent remote.Sent) (*messageView, error) {
	st, err := rs.Track(sent.ID)
	if err != nil {
		return nil, err
	}
	// The expiry is the sent log's: the lifetime asked, which the store
	// may have cut to its maxlifetime (Track does not tell); unknown for
	// a line written before lines held it.
	v := &messageView{ID: sent.ID.String(), Submitted: sent.Submitted.UTC(), Subject: sent.Subject,
		Expires: sent.Expires().UTC(), ExpiresAsked: !sent.Expires().IsZero(),
		Recipients: []recipientView{}, Lists: []listView{}}
	for _, r := range st {
		a, err := r.Recipient.Addr()
		address := r.Recipient.Local + "@" + strings.Join(r.Recipient.Domain, ".")
		if err == nil {
			address = a.String()
		}
		n, rd := store.Notification(r.Status.Notification), store.Read(r.Status.Read)
		v.Recipients = append(v.Recipients, recipientView{Address: address, Notification: n.String(), Read: rd.String(), Pinned: r.Status.Pinned})
		v.pending = v.pending || !n.Final()
		v.failed = v.failed || n.Failed()
	}
	return v, nil
}

// runRemote asks the remote store. MSOAP tracks one message at a time, so
// the listing is of the messages the sent log records for account, from
// im2000-inject and from im2000-smtpd alike.
func runRemote(p *printer, c conf.Dir, account, idText string, f filter, summary bool) error {
	rs, err := remote.Dial(c, account)
	if err != nil {
		return err
	}
	defer rs.Close()
	if idText != "" {
		id, err := msgid.Parse(idText)
		if err != nil {
			return fail.Perm(fmt.Errorf("%q: %v", idText, err))
		}
		v, err := remoteView(rs, sentRecord(c, account, id))
		if errors.Is(err, remote.ErrNoSuch) {
			return fail.Perm(fmt.Errorf("%s: no such message in the archive of %s", idText, account))
		}
		if err != nil {
			return err
		}
		return p.recipients(v)
	}
	sent, err := readSent(c, account)
	if err != nil {
		return err
	}
	var views []*messageView
	for _, s := range sent {
		v, err := remoteView(rs, s)
		if errors.Is(err, remote.ErrNoSuch) {
			continue // cancelled or expired
		}
		if err != nil {
			return err
		}
		if f.keep(v) {
			views = append(views, v)
		}
	}
	return p.list(views, summary)
}

// sentRecord is what the sent log says of id (when it was submitted, the
// lifetime asked, its subject), or the id alone: MSOAP Track does not tell
// the dates.
func sentRecord(c conf.Dir, account string, id msgid.ID) remote.Sent {
	if sent, err := readSent(c, account); err == nil {
		for _, s := range sent {
			if s.ID == id {
				return s
			}
		}
	}
	return remote.Sent{ID: id}
}

// clockSlack is the day a line's time, the submitting host's clock, is
// given beyond maxlifetime.
const clockSlack = 24 * time.Hour

// readSent reads account's lines of its sent log. Only the account's own
// lines: a log an im2000-smtpd shared by many accounts writes holds theirs
// too (Track would refuse them anyway). None older than maxlifetime (as
// this host's configuration says it: the store's is not told over MSOAP)
// and a day: no store keeps their messages, and each line left is one
// MSOAP Track.
func readSent(c conf.Dir, account string) ([]remote.Sent, error) {
	log, err := remote.SentLog(c, account)
	if err != nil {
		return nil, err
	}
	life, err := c.Num("maxlifetime")
	if err != nil {
		return nil, err
	}
	since := time.Now().Add(-time.Duration(min(life, 100*365*86400))*time.Second - clockSlack)
	sent, err := remote.ReadLog(log, account, since)
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err // the path is said once, below
	}
	if errors.Is(err, fs.ErrPermission) {
		// Exit 111, as for any setting that cannot be read: the admin
		// mends it, and the same command then works.
		return nil, fail.Temp(fmt.Errorf("sent log %s: %v: have the admin make it readable by you (sentlog in im2000-conf(5))", log, err))
	}
	if err != nil {
		return nil, fail.Temp(fmt.Errorf("sent log %s: %w", log, err))
	}
	return sent, nil
}
