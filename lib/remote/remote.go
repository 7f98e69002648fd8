// Package remote is the originator's side of MSOAP, for the commands that
// reach an archive at another host: im2000-inject submits and im2000-status
// tracks through it when the configuration names a remote store.
package remote

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"im2000/lib/addr"
	"im2000/lib/conf"
	"im2000/lib/fail"
	"im2000/lib/locate"
	"im2000/lib/msgid"
	"im2000/lib/session"
	"im2000/lib/wire"
	"im2000/lib/wire/msoap"
)

// Configured reports whether the configuration names a remote store.
func Configured(d conf.Dir) (bool, error) {
	r, err := d.Str("remote")
	return r != "", err
}

// Store is an authenticated MSOAP session with the account's store.
type Store struct {
	c *session.Client
}

// chunkSize is how much message one SubmitMsgChunk carries.
const chunkSize = 256 << 10

// Dial connects to the store the remote file names (host:port, or a domain
// whose _msoap._tcp SRV records say where) and authenticates as account
// with the password in the password file.
func Dial(d conf.Dir, account string) (*Store, error) { return DialAs(d, account, "") }

// DialAs is Dial with a password given (im2000-smtpd passes on the one its
// client authenticated with); empty means the password file's.
func DialAs(d conf.Dir, account, password string) (*Store, error) {
	where, err := d.Str("remote")
	if err != nil {
		return nil, err
	}
	if password == "" {
		if password, err = d.Str("password"); err != nil {
			return nil, err
		}
	}
	if password == "" {
		return nil, fail.Perm(fmt.Errorf("no password for the remote store: write it to %s (mode 600)", d.Path("password")))
	}
	l, err := locate.FromConf(d)
	if err != nil {
		return nil, err
	}
	timeout, err := session.ClientTimeout(d)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := session.DialWhere(ctx, l, msoap.Protocol, where, timeout)
	if errors.Is(err, locate.ErrBadDomain) {
		return nil, fail.Perm(err)
	}
	if err != nil {
		return nil, fail.Temp(fmt.Errorf("remote store %s: %w", where, err))
	}
	if _, err := session.Expect[msoap.AuthenticateOK](c, &msoap.Authenticate{Account: account, Password: password}); err != nil {
		c.Close()
		return nil, classify(fmt.Errorf("remote store %s: authenticate as %s: %w", where, account, err))
	}
	return &Store{c: c}, nil
}

// classify gives an MSOAP status its exit code.
func classify(err error) error {
	var se *session.StatusError
	if !errors.As(err, &se) {
		return fail.Temp(err)
	}
	switch se.Status {
	case msoap.ErrorNotAuthenticated:
		return fail.Perm(fmt.Errorf("%w (check the account and the password file)", err))
	case msoap.ErrorLifetimeTooShort, msoap.ErrorNotPermitted, msoap.ErrorMalformedPDU:
		return fail.Perm(err)
	}
	return fail.Temp(err)
}

// Close ends the session.
func (s *Store) Close() error { return s.c.Close() }

// Submit sends one message and returns its identifier at the store. A
// recipient or list the store refuses fails the whole submission (and
// nothing is kept), as sendmail fails on a bad recipient.
func (s *Store) Submit(rcpts []addr.Mailbox, lists []string, lifetime time.Duration, msg []byte) (msgid.ID, error) {
	env := &msoap.SubmitEnvelope{Lifetime: uint64(lifetime / time.Second)}
	for _, r := range rcpts {
		env.Recipients = append(env.Recipients, wire.FromAddr(r))
	}
	for _, l := range lists {
		env.Lists = append(env.Lists, []byte(l))
	}
	resp, err := session.Expect[*msoap.SubmitEnvelopeOK](s.c, env)
	if err != nil {
		return msgid.ID{}, classify(err)
	}
	if len(resp.Recipients) != len(rcpts) || len(resp.Lists) != len(lists) {
		s.c.Close()
		return msgid.ID{}, fail.Temp(fmt.Errorf("MSOAP: %w: %d recipient and %d list answers for %d recipients and %d lists",
			session.ErrProtocol, len(resp.Recipients), len(resp.Lists), len(rcpts), len(lists)))
	}
	var refused []string
	for i, st := range resp.Recipients {
		if st != msoap.Acceptable {
			refused = append(refused, rcpts[i].String())
		}
	}
	for i, st := range resp.Lists {
		if st != msoap.Acceptable {
			refused = append(refused, "list "+lists[i])
		}
	}
	if len(refused) > 0 {
		s.c.Close() // a close inside the submission aborts it
		return msgid.ID{}, fail.Perm(fmt.Errorf("the store refuses %s", strings.Join(refused, ", ")))
	}
	for off := 0; ; off += chunkSize {
		end := min(off+chunkSize, len(msg))
		r, err := session.Expect[*msoap.SubmitMsgChunkOK](s.c, &msoap.SubmitMsgChunk{IsLast: end == len(msg), Offset: uint64(off), Data: msg[off:end]})
		if err != nil {
			return msgid.ID{}, classify(err)
		}
		if end == len(msg) {
			if r.ID == nil {
				return msgid.ID{}, fail.Temp(fmt.Errorf("MSOAP: %w: the last chunk was answered without an identifier (the message may be at the store)", session.ErrProtocol))
			}
			return *r.ID, nil
		}
	}
}

// Track returns each recipient's delivery status; ErrNoSuch for an id that
// is not the account's.
func (s *Store) Track(id msgid.ID) ([]msoap.RecipientStatus, error) {
	r, err := session.Expect[*msoap.TrackOK](s.c, &msoap.Track{ID: id})
	var se *session.StatusError
	if errors.As(err, &se) && se.Status == msoap.ErrorNoSuchMessage {
		return nil, ErrNoSuch
	}
	if err != nil {
		return nil, classify(err)
	}
	return r.Recipients, nil
}

// Cancel withdraws one of the account's messages at the store; ErrNoSuch
// for an id that is not the account's (or is gone already).
func (s *Store) Cancel(id msgid.ID) error {
	_, err := session.Expect[msoap.CancelOK](s.c, &msoap.Cancel{ID: id})
	var se *session.StatusError
	if errors.As(err, &se) && se.Status == msoap.ErrorNoSuchMessage {
		return ErrNoSuch
	}
	if err != nil {
		return classify(err)
	}
	return nil
}

// ErrNoSuch is Track's and Cancel's answer for an unknown id.
var ErrNoSuch = errors.New("no such message at the remote store")
