package remote

import (
	"errors"
	"fmt"
	"time"

	"im2000/lib/fail"
	"im2000/lib/msgid"
	"im2000/lib/session"
	"im2000/lib/store"
	"im2000/lib/wire/msoap"
)

// ErrNoResend is the answer of a store that does not know MSOAP Resend,
// im2000's extension of the profile: another implementation refuses an
// alternative it does not know as a malformed PDU.
var ErrNoResend = errors.New("the store does not offer MSOAP Resend (im2000's extension of the protocol): run im2000-status --resend on the store's host, or ask its admin")

// Resend asks the store to notify again, now, every recipient of one of
// the account's messages who has not silenced it (msoap.Resend); ErrNoSuch
// for an id that is not the account's, store.ErrFinished when nobody is
// left to notify. An answer no im2000-submitd gives (checkResent) is the
// store's fault, a temporary failure, and nothing of it is shown as fact.
func (s *Store) Resend(id msgid.ID) (store.Resent, error) {
	r, err := session.Expect[*msoap.ResendOK](s.c, &msoap.Resend{ID: id})
	var se *session.StatusError
	switch {
	case errors.As(err, &se) && se.Status == msoap.ErrorNoSuchMessage:
		return store.Resent{}, ErrNoSuch
	case errors.As(err, &se) && se.Status == msoap.ErrorMalformedPDU:
		return store.Resent{}, fail.Perm(fmt.Errorf("%w (%v)", ErrNoResend, err))
	case err != nil:
		return store.Resent{}, classify(err)
	}
	if err := checkResent(r, time.Now()); err != nil {
		return store.Resent{}, fail.Temp(fmt.Errorf("the store gave a bad answer to MSOAP Resend (recipients %d, held %d, until %d): %v; the resend may or may not have happened: see im2000-status %s, or ask the store's admin",
			r.Recipients, r.Held, r.Until, err, id))
	}
	if r.Recipients == 0 {
		return store.Resent{}, store.ErrFinished
	}
	res := store.Resent{Recipients: int(r.Recipients), Held: int(r.Held)}
	if r.Held > 0 {
		res.Until = time.Unix(int64(r.Until), 0)
	}
	return res, nil
}

// maxRecipients bounds the recipients a Resend answer may count: far
// more than any store lets a message have, and an int everywhere.
const maxRecipients = 1 << 31

// maxHeldFor is the furthest a held recipient's time may be: the store's
// resendfloor is at most a year (store.ResendFloor), plus a day for the
// two hosts' clocks.
const maxHeldFor = 366 * 24 * time.Hour

// checkResent refuses an answer im2000-submitd never gives: more held
// recipients than recipients, held ones without their time or a time
// without held ones, a time further than any resendfloor.
func checkResent(r *msoap.ResendOK, now time.Time) error {
	switch {
	case r.Recipients > maxRecipients:
		return fmt.Errorf("more than %d recipients", maxRecipients)
	case r.Held > r.Recipients:
		return errors.New("more recipients held than recipients")
	case r.Held > 0 && r.Until == 0:
		return errors.New("recipients held without the time they are held until")
	case r.Held == 0 && r.Until != 0:
		return errors.New("a time recipients are held until, with none held")
	case r.Until > uint64(now.Add(maxHeldFor).Unix()):
		return fmt.Errorf("recipients held past %s, further than any resendfloor", now.Add(maxHeldFor).UTC().Format(time.RFC3339))
	}
	return nil
}
