package store

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"time"

	"im2000/lib/mailmsg"
	"im2000/lib/msgid"
)

// Lookup opens the message that a recipient or list identifier gives
// access to, and returns the identifier's index (recipients first, then
// lists). Identifiers that are unknown, forged (the envelope does not list
// them), of a cancelled message, or of a message past its lifetime are
// all ErrNoSuch, alike.
//
// A list id, and a recipient id handed out before recipient ids were
// derived, has a link rcpt/<id> of its own; any other recipient id is
// decrypted to its message's locator and its index (rid.go).
func (s *Store) Lookup(rid msgid.ID, now time.Time) (*Message, int, error) {
	m, err := s.follow(s.rcptPath(rid))
	if err == nil {
		if i := m.Env.index(rid); i >= 0 && !now.After(m.Env.Expires()) {
			return m, i, nil
		}
		m.Close()
		return nil, 0, ErrNoSuch
	}
	if !errors.Is(err, ErrNoSuch) {
		return nil, 0, err
	}
	link, loc, u := s.decrypt(rid)
	m, err = s.follow(link)
	if err != nil {
		return nil, 0, err
	}
	env := m.Env
	if !bytes.Equal(env.ID[:locatorSize], loc[:]) || uint64(u) >= uint64(len(env.Recipients)) ||
		env.Recipients[u].ID != rid || now.After(env.Expires()) {
		m.Close()
		return nil, 0, ErrNoSuch
	}
	return m, int(u), nil
}

// follow opens the message an index link in rcpt/ leads to: ErrNoSuch if
// there is no link, or it leads anywhere but an account's msg/.
func (s *Store) follow(link string) (*Message, error) {
	target, err := os.Readlink(link)
	if err != nil {
		return nil, ErrNoSuch
	}
	parts := strings.Split(target, "/")
	if len(parts) != 4 || parts[0] != ".." || parts[2] != "msg" || CheckAccount(parts[1]) != nil {
		return nil, ErrNoSuch
	}
	return openMessage(s, link, parts[1], filepath.Join(s.Root, parts[1]))
}

// Header returns the message's header section (mailmsg.HeaderSection).
func (m *Message) Header() ([]byte, error) { return mailmsg.HeaderSection(m.Body()) }
