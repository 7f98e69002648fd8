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
// left to notify.
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
	case r.Recipients == 0:
		return store.Resent{}, store.ErrFinished
	case r.Held > r.Recipients:
		return store.Resent{}, fail.Temp(fmt.Errorf("the store answered Resend with %d held of %d recipients", r.Held, r.Recipients))
	}
	res := store.Resent{Recipients: int(min(r.Recipients, 1<<31)), Held: int(r.Held)}
	if r.Until != 0 && r.Until < 1<<40 {
		res.Until = time.Unix(int64(r.Until), 0)
	}
	return res, nil
}
