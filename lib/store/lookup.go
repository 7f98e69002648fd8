package store

import (
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
func (s *Store) Lookup(rid msgid.ID, now time.Time) (*Message, int, error) {
	link := s.rcptPath(rid)
	target, err := os.Readlink(link)
	if err != nil {
		return nil, 0, ErrNoSuch
	}
	parts := strings.Split(target, "/")
	if len(parts) != 4 || parts[0] != ".." || parts[2] != "msg" || CheckAccount(parts[1]) != nil {
		return nil, 0, ErrNoSuch
	}
	m, err := openMessage(link, parts[1], filepath.Join(s.Root, parts[1]))
	if err != nil {
		return nil, 0, err
	}
	i := m.Env.index(rid)
	if i < 0 || now.After(m.Env.Expires()) {
		m.Close()
		return nil, 0, ErrNoSuch
	}
	return m, i, nil
}

// Header returns the message's header section (mailmsg.HeaderSection).
func (m *Message) Header() ([]byte, error) { return mailmsg.HeaderSection(m.Body()) }
