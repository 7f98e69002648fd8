// Package submit puts a message prepared by lib/mailmsg into an account's
// archive: straight into the local store, or over MSOAP when the
// configuration names a remote store. im2000-inject and im2000-smtpd
// submit this one way; im2000-submitd, which stores what it is sent as it
// is, applies the same From rule (Senders) to the message it receives.
package submit

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"time"

	"im2000/lib/addr"
	"im2000/lib/conf"
	"im2000/lib/fail"
	"im2000/lib/mailmsg"
	"im2000/lib/msgid"
	"im2000/lib/remote"
	"im2000/lib/session"
	"im2000/lib/store"
	"im2000/lib/wire/msoap"
)

// ErrNotPermitted is a post to a list the account may not post to.
var ErrNotPermitted = errors.New("not permitted")

// Request is one message for one account.
type Request struct {
	Conf       conf.Dir
	Settings   *conf.Local // Account is whose archive it goes into
	Recipients []addr.Mailbox
	Lists      []string
	Msg        *mailmsg.Message // header read, body not yet
	From       addr.Mailbox     // for a From field the message lacks
	FullName   string
	Password   string // for a remote store; empty: the password file
	// NotRecorded logs a remote submission, committed at the store, that
	// the sent log could not record; nil: logNotRecorded's warning.
	NotRecorded func(id msgid.ID, sentlog string, err error)
}

// Submit commits the message and returns its identifier at the store.
func Submit(r *Request) (msgid.ID, error) {
	s := r.Settings
	if len(r.Recipients) == 0 && len(r.Lists) == 0 {
		return msgid.ID{}, fmt.Errorf("%w: name at least one recipient or list", store.ErrNoRecipients)
	}
	for _, l := range r.Lists {
		if err := store.CheckListName(l); err != nil {
			return msgid.ID{}, err
		}
	}
	isRemote, err := remote.Configured(r.Conf)
	if err != nil {
		return msgid.ID{}, err
	}
	if isRemote {
		return submitRemote(r) // the remote store decides who may post
	}
	for _, l := range r.Lists {
		ok, err := r.Conf.MayPost(l, s.Account)
		if err != nil {
			return msgid.ID{}, err
		}
		if !ok {
			return msgid.ID{}, fmt.Errorf("%w: %s may not post to list %s (see %s)", ErrNotPermitted, s.Account, l, r.Conf.Path("lists/"+l))
		}
	}
	sender, err := addr.Parse(s.Account + "@" + s.Me)
	if err != nil {
		return msgid.ID{}, fmt.Errorf("account %q at %q is not a valid address: %w", s.Account, s.Me, store.ErrBadAccount)
	}
	senders, err := LoadSenders(r.Conf, s.Account, s.Me)
	if err != nil {
		return msgid.ID{}, err
	}
	root, err := r.Conf.Store()
	if err != nil {
		return msgid.ID{}, err
	}
	st, err := store.Open(root)
	if err != nil {
		return msgid.ID{}, err
	}
	acct, err := st.Account(s.Account)
	if err != nil {
		return msgid.ID{}, err
	}
	lim := store.Limits{MaxMessage: s.MaxMessage, Quota: s.Quota}
	d, err := acct.NewDraft(store.Submission{Sender: sender, Lifetime: s.Lifetime, Recipients: r.Recipients, Lists: r.Lists}, lim)
	if err != nil {
		return msgid.ID{}, err
	}
	env := d.Envelope()
	r.Msg.Complete(mailmsg.Defaults{From: r.From, FullName: r.FullName, Date: env.Submitted, MessageID: env.ID.String() + "@" + s.Me})
	if err := senders.Check(r.Msg.Header); err != nil { // the header as it will be stored
		d.Abort()
		return msgid.ID{}, err
	}
	if _, err := r.Msg.WriteTo(d); err != nil {
		d.Abort()
		return msgid.ID{}, r.tooLarge(err)
	}
	if _, err := d.Commit(); err != nil {
		return msgid.ID{}, err
	}
	return env.ID, nil
}

func (r *Request) tooLarge(err error) error {
	if errors.Is(err, store.ErrTooLarge) {
		return fmt.Errorf("%w (%d bytes; see %s)", err, r.Settings.MaxMessage, r.Conf.Path("databytes"))
	}
	return err
}

// submitRemote submits over MSOAP and records the submission in the sent
// log of the account (remote.SentLog), which its im2000-status lists.
func submitRemote(r *Request) (msgid.ID, error) {
	s := r.Settings
	now := time.Now()
	r.Msg.Complete(mailmsg.Defaults{From: r.From, FullName: r.FullName, Date: now, MessageID: msgid.New().String() + "@" + s.Me})
	var buf bytes.Buffer
	if _, err := r.Msg.WriteTo(&limitWriter{w: &buf, left: s.MaxMessage}); err != nil {
		return msgid.ID{}, r.tooLarge(err)
	}
	rs, err := remote.DialAs(r.Conf, s.Account, r.Password)
	if err != nil {
		return msgid.ID{}, err
	}
	defer rs.Close()
	id, err := rs.Submit(r.Recipients, r.Lists, s.Lifetime, buf.Bytes())
	var se *session.StatusError
	if errors.As(err, &se) && se.Status == msoap.ErrorNotPermitted {
		// im2000-submitd answers the last chunk so for the From rule
		// (nothing else in a submission is refused with this status).
		return msgid.ID{}, fail.Perm(fmt.Errorf("%w: the store refuses the message (%v): its From or Sender names an address %s may not send as there; write your own address %s@%s, or have the store's admin allow the address in senders/%s of the store's configuration",
			ErrSender, err, s.Account, s.Account, s.Me, s.Account))
	}
	if err != nil {
		return msgid.ID{}, err
	}
	subject, _ := r.Msg.Header.Subject()
	// The message is committed at the store: a failure here costs only the
	// listing (the id printed or answered still tracks and cancels it).
	log, err := remote.SentLog(r.Conf, s.Account)
	if err == nil {
		// The lifetime asked: Track does not tell the expiry, and the store
		// may have cut it to its maxlifetime (status marks it as asked).
		err = remote.Record(log, remote.Sent{ID: id, Submitted: now, Account: s.Account, Lifetime: s.Lifetime, Subject: subject})
	}
	if err != nil {
		notRecorded := r.NotRecorded
		if notRecorded == nil {
			notRecorded = logNotRecorded
		}
		notRecorded(id, log, err)
	}
	return id, nil
}

// limitWriter fails with store.ErrTooLarge past its limit (0: none).
type limitWriter struct {
	w    io.Writer
	left int64
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if l.left > 0 && int64(len(p)) > l.left {
		return 0, store.ErrTooLarge
	}
	if l.left > 0 {
		l.left -= int64(len(p))
	}
	return l.w.Write(p)
}
