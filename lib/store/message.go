package store

import (
	"bufio"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"im2000/lib/durable"
	"im2000/lib/msgid"
)

// Message is an open, committed message.
type Message struct {
	Env     *Envelope
	Account string
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

func openMessage(path, account, dir string) (*Message, error) {
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
	env, off, err := ReadEnvelope(bufio.NewReaderSize(io.NewSectionReader(f, 0, fi.Size()), 4096))
	if err != nil {
		f.Close()
		return nil, err
	}
	return &Message{Env: env, Account: account, dir: dir, f: f, off: off, size: fi.Size() - off}, nil
}

// Open opens one of the account's messages by its message identifier.
func (a *Account) Open(id msgid.ID) (*Message, error) {
	m, err := openMessage(a.path("msg", id), a.Name, a.dir)
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

// Status reads a message's sidecar. Readers need no lock: the file is only
// ever replaced whole.
func (a *Account) Status(id msgid.ID) (*Status, error) {
	b, err := os.ReadFile(a.path("status", id))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNoSuch
	}
	if err != nil {
		return nil, err
	}
	st, err := ParseStatus(b)
	if err != nil {
		return nil, err
	}
	for i := range st.Lists {
		st.Lists[i].Retrievals += readTotal(a.readsPath(id, st.Lists[i].ID))
	}
	return st, nil
}

// readsPath is the counter of a list identifier's retrievals (reads.go).
func (a *Account) readsPath(id, lid msgid.ID) string {
	return a.path("status", id) + "." + lid.String() + ".reads"
}

// Update changes a message's sidecar. Updates are serialised by an exclusive
// flock on the message file, which is never replaced, so that concurrent
// updaters in any number of processes never lose one another's changes.
// fn sees the envelope and the current status and changes the status in
// place; if it returns an error nothing is written.
func (a *Account) Update(id msgid.ID, fn func(*Envelope, *Status) error) error {
	m, err := a.Open(id)
	if err != nil {
		return err
	}
	defer m.Close()
	return m.Update(fn)
}

// Update changes the sidecar of an open message, as Account.Update does.
// The lock is held until the message is closed.
func (m *Message) Update(fn func(*Envelope, *Status) error) error {
	if err := flock(m.f); err != nil {
		return err
	}
	accountDir := m.dir
	path := filepath.Join(accountDir, "status", m.Env.ID.String())
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	st, err := ParseStatus(b)
	if err != nil {
		return err
	}
	if !st.matches(m.Env) {
		return corrupt("status %s does not match its envelope", m.Env.ID)
	}
	if err := fn(m.Env, st); err != nil {
		return err
	}
	return durable.WriteFile(path, st.Marshal(), 0o600, filepath.Join(accountDir, "tmp"))
}

func flock(f *os.File) error {
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if err != unix.EINTR {
			return err
		}
	}
}

// Clean removes the debris of crashed writers: temporary files, and
// sidecars and index entries whose message was never committed, once they
// are older than StaleAge at time now. Committed messages are never touched.
func (s *Store) Clean(now time.Time) error {
	accounts, err := s.Accounts()
	if err != nil {
		return err
	}
	var first error
	keep := func(err error) {
		if err != nil && first == nil {
			first = err
		}
	}
	for _, name := range accounts {
		a := &Account{s: s, Name: name, dir: filepath.Join(s.Root, name)}
		a.cleanTmp(now)
		keep(cleanDir(filepath.Join(a.dir, "todo"), now, danglingLink))
		keep(cleanDir(filepath.Join(a.dir, "queue"), now, danglingLink))
		keep(cleanDir(filepath.Join(a.dir, "status"), now, func(path string) bool {
			id, _, _ := strings.Cut(filepath.Base(path), ".") // <id> and <id>.<lid>.reads
			_, err := os.Lstat(filepath.Join(a.dir, "msg", id))
			return errors.Is(err, fs.ErrNotExist)
		}))
	}
	keep(cleanDir(filepath.Join(s.Root, "rcpt"), now, danglingLink))
	lists, _ := os.ReadDir(filepath.Join(s.Root, "lists"))
	for _, l := range lists {
		days, _ := os.ReadDir(filepath.Join(s.Root, "lists", l.Name()))
		for _, d := range days {
			keep(cleanDir(filepath.Join(s.Root, "lists", l.Name(), d.Name()), now, danglingLink))
		}
	}
	return first
}

func (a *Account) cleanTmp(now time.Time) {
	cleanDir(filepath.Join(a.dir, "tmp"), now, func(string) bool { return true })
}

func danglingLink(path string) bool {
	_, err := os.Stat(path)
	return errors.Is(err, fs.ErrNotExist)
}

// cleanDir removes the entries of dir older than StaleAge that debris says
// are debris.
//
// The directory is read a slice at a time: rcpt/ holds a link per
// recipient of every archived message, and reading it whole took a
// quarter of a GiB with a million of them.
func cleanDir(dir string, now time.Time, debris func(path string) bool) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	removed := false
	for {
		ents, err := f.ReadDir(1024)
		for _, e := range ents {
			path := filepath.Join(dir, e.Name())
			fi, err := os.Lstat(path)
			if err != nil || now.Sub(fi.ModTime()) < StaleAge || !debris(path) {
				continue
			}
			if os.Remove(path) == nil {
				removed = true
			}
		}
		if err == io.EOF || len(ents) == 0 {
			break
		}
		if err != nil {
			return err
		}
	}
	if removed {
		return durable.SyncDir(dir)
	}
	return nil
}

// ListEntry is one message in a list's index.
type ListEntry struct {
	ID        msgid.ID // the list identifier
	Submitted time.Time
}

// ScanLag is how far behind the present a list scan's end stays: an entry is
// made just before its message is committed, so one dated in the last
// moments may belong to a commit still in progress. Scanning up to
// now-ScanLag and resuming there never skips a message and never repeats one.
const ScanLag = 5 * time.Second

// ScanList returns the committed messages posted to list name at or after
// begin and before end, oldest first.
func (s *Store) ScanList(name string, begin, end time.Time) ([]ListEntry, error) {
	if err := CheckListName(name); err != nil {
		return nil, err
	}
	dir := filepath.Join(s.Root, "lists", name)
	days, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	firstDay := begin.UTC().Format("2006-01-02")
	var out []ListEntry
	for _, d := range days { // ReadDir sorts by name, and day names sort by date
		if d.Name() < firstDay {
			continue
		}
		ents, err := os.ReadDir(filepath.Join(dir, d.Name()))
		if err != nil {
			return nil, err
		}
		for _, e := range ents {
			tText, idText, ok := strings.Cut(e.Name(), ".")
			t, err1 := parseUint(tText)
			id, err2 := msgid.Parse(idText)
			if !ok || err1 != nil || err2 != nil || t < begin.Unix() || t >= end.Unix() {
				continue
			}
			if danglingLink(filepath.Join(dir, d.Name(), e.Name())) {
				continue
			}
			out = append(out, ListEntry{ID: id, Submitted: time.Unix(t, 0)})
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Submitted.Before(out[j].Submitted) })
	return out, nil
}

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

// Header returns the message's header section: every field, with the line
// end of the last, without the empty line after it.
func (m *Message) Header() ([]byte, error) {
	r := bufio.NewReader(io.LimitReader(m.Body(), 1<<20))
	var h []byte
	start := true // at the start of a line
	for {
		// A line longer than the buffer comes in pieces: a piece that is
		// "\r\n" or "\n" is the empty line only at the start of a line,
		// not the end of a line that filled the buffer up to its line end
		// or up to the CR of it.
		line, err := r.ReadSlice('\n')
		if start && (string(line) == "\r\n" || string(line) == "\n") {
			return h, nil
		}
		h = append(h, line...)
		start = err == nil
		switch err {
		case nil, bufio.ErrBufferFull:
		case io.EOF:
			return h, nil // no body: all header
		default:
			return nil, err
		}
	}
}

// summaryFields are what a summaryonly retrieval returns.
var summaryFields = map[string]bool{"from": true, "to": true, "cc": true, "subject": true, "date": true, "message-id": true}

// Summary keeps the fields From, To, Cc, Subject, Date and Message-ID of a
// header section, as they stand, in their order.
func Summary(header []byte) []byte {
	var out []byte
	keep := false
	for len(header) > 0 {
		n := strings.IndexByte(string(header), '\n') + 1
		if n == 0 {
			n = len(header)
		}
		line := header[:n]
		header = header[n:]
		if line[0] != ' ' && line[0] != '\t' {
			name, _, _ := strings.Cut(string(line), ":")
			keep = summaryFields[strings.ToLower(strings.TrimSpace(name))]
		}
		if keep {
			out = append(out, line...)
		}
	}
	return out
}

// Cancel withdraws one of the account's messages: from the moment its file
// is unlinked nothing can retrieve it and notifyd has no more work for it.
// The index entries that pointed at it are removed now or, if that fails
// half-way, by Clean.
func (a *Account) Cancel(id msgid.ID) error {
	m, err := a.Open(id)
	if err != nil {
		return err
	}
	defer m.Close()
	if err := flock(m.f); err != nil { // no sidecar update in flight
		return err
	}
	if err := os.Remove(a.path("msg", id)); err != nil {
		return err
	}
	if err := durable.SyncDir(filepath.Join(a.dir, "msg")); err != nil {
		return err
	}
	os.Remove(a.path("todo", id))
	os.Remove(a.path("queue", id))
	os.Remove(a.path("status", id))
	for _, r := range m.Env.Recipients {
		os.Remove(a.s.rcptPath(r.ID))
	}
	for _, l := range m.Env.Lists {
		os.Remove(a.s.rcptPath(l.ID))
		os.Remove(a.readsPath(id, l.ID))
	}
	return nil
}
