package store

import (
	"bufio"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"im2000/lib/msgid"
)

// Message is an open, committed message.
type Message struct {
	Env     *Envelope
	Account string
	s       *Store
	dir     string // the account's directory
	f       *os.File
	off     int64 // where the message starts, after the envelope
	size    int64
}

// Size is the length of the message without its envelope.
func (m *Message) Size() int64 { return m.size }

// Body reads the message bytes (headers and body, as submitted).
func (m *Message) Body() *io.SectionReader { return io.NewSectionReader(m.f, m.off, m.size) }

// Close releases the message.
func (m *Message) Close() error { return m.f.Close() }

func openMessage(s *Store, path, account, dir string) (*Message, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNoSuch
	}
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	key, keyed := keyOf(fi)
	env, off := envelopes.get(key, keyed)
	if env == nil {
		env, off, err = ReadEnvelope(bufio.NewReaderSize(io.NewSectionReader(f, 0, fi.Size()), 4096))
		if err != nil {
			f.Close()
			return nil, err
		}
		if keyed {
			envelopes.put(key, env, off)
		}
	}
	return &Message{Env: env, Account: account, s: s, dir: dir, f: f, off: off, size: fi.Size() - off}, nil
}

// envelopes keeps the last large envelope a process parsed: a message file
// never changes once committed, so its identity (device, inode, size,
// time) names its envelope. Each silence of a message to 10,000 recipients
// opened the message and parsed 10,000 envelope lines (six minutes of CPU
// for 10,000 silences); now once. Envelopes are shared, never changed by
// their users.
var envelopes envelopeCache

// envelopeCacheMin is the recipient count below which parsing is cheaper
// than remembering.
const envelopeCacheMin = 64

type envelopeCache struct {
	sync.Mutex
	key fileKey
	env *Envelope
	off int64
}

func (c *envelopeCache) get(k fileKey, keyed bool) (*Envelope, int64) {
	c.Lock()
	defer c.Unlock()
	if !keyed || c.env == nil || c.key != k {
		return nil, 0
	}
	return c.env, c.off
}

func (c *envelopeCache) put(k fileKey, env *Envelope, off int64) {
	if len(env.Recipients) < envelopeCacheMin {
		return
	}
	c.Lock()
	c.key, c.env, c.off = k, env, off
	c.Unlock()
}

// Open opens one of the account's messages by its message identifier.
func (a *Account) Open(id msgid.ID) (*Message, error) {
	m, err := openMessage(a.s, a.path("msg", id), a.Name, a.dir)
	if err == nil && m.Env.ID != id {
		m.Close()
		return nil, corrupt("message %s holds the envelope of %s", id, m.Env.ID)
	}
	return m, err
}

// Messages lists the identifiers of the account's committed messages, oldest
// first (by file time, then id).
func (a *Account) Messages() ([]msgid.ID, error) {
	ents, err := os.ReadDir(filepath.Join(a.dir, "msg"))
	if err != nil {
		return nil, err
	}
	type item struct {
		id msgid.ID
		t  time.Time
	}
	var items []item
	for _, e := range ents {
		id, err := msgid.Parse(e.Name())
		if err != nil {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue // removed meanwhile
		}
		items = append(items, item{id, fi.ModTime()})
	}
	sort.Slice(items, func(i, j int) bool {
		if !items[i].t.Equal(items[j].t) {
			return items[i].t.Before(items[j].t)
		}
		return items[i].id.String() < items[j].id.String()
	})
	ids := make([]msgid.ID, len(items))
	for i, it := range items {
		ids[i] = it.id
	}
	return ids, nil
}

// Cancel withdraws one of the account's messages: from the moment its
// index entries are gone (step 2 of reap.go's order) nothing can retrieve
// it and notifyd has no more work for it; a crash half-way is finished by
// the next Reap.
func (a *Account) Cancel(id msgid.ID) error { return a.remove(id) }
