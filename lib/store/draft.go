package store

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"im2000/lib/addr"
	"im2000/lib/conf"
	"im2000/lib/durable"
	"im2000/lib/msgid"
)

// Limits bound what one submission may take. Zero means no limit.
type Limits struct {
	MaxMessage int64 // bytes of one message
	Quota      int64 // bytes of all the account's committed messages
	MaxRcpt    int   // distinct recipients of one message
}

// DefaultMaxRcpt is the most recipients one message may name when the
// maxrcpt setting says nothing: the one rule for every way in (smtpd's
// RCPT limit, submitd's envelope). 100 is RFC 5321's minimum a server must
// take (4.5.3.1.8); more is a mailing list, and lists are what lists are for.
var DefaultMaxRcpt = int(conf.Default("maxrcpt"))

// MaxRcpt reads the maxrcpt setting (DefaultMaxRcpt when it is absent).
func MaxRcpt(d conf.Dir) (int, error) {
	n, err := d.Num("maxrcpt")
	if err != nil {
		return 0, err
	}
	if n < 1 || n > 1<<20 {
		return 0, fmt.Errorf("%s is %d: write a number of recipients from 1 to %d", d.Path("maxrcpt"), n, 1<<20)
	}
	return int(n), nil
}

// ErrTooManyRecipients is a message with more distinct recipients than
// Limits.MaxRcpt. Permanent.
var ErrTooManyRecipients = errors.New("more recipients than the store takes in one message")

// RecipientKey is what makes two recipients the same: the local part
// without regard to case, as agents match it (im2000-agentd keeps
// Bob@example.net for bob), and the domain (lowercase already).
func RecipientKey(m addr.Mailbox) string { return strings.ToLower(m.Local) + "@" + m.Domain }

// Fate is what became of one recipient an envelope named.
type Fate uint8

const (
	Kept      Fate = iota // a recipient of the message
	Duplicate             // the same as an earlier one: one copy, the earlier's
	OverCap               // past the recipient limit: left out
)

// Collapse returns the distinct recipients of rcpts, in order, each as
// first written, at most maxRcpt of them (0: no limit), and what became of
// each entry. Naming bob 2,000 times makes one recipient.
func Collapse(rcpts []addr.Mailbox, maxRcpt int) ([]addr.Mailbox, []Fate) {
	seen := make(map[string]bool, len(rcpts))
	var out []addr.Mailbox
	fates := make([]Fate, len(rcpts))
	for i, r := range rcpts {
		k := RecipientKey(r)
		switch {
		case seen[k]:
			fates[i] = Duplicate
		case maxRcpt > 0 && len(out) >= maxRcpt:
			fates[i] = OverCap
		default:
			seen[k] = true
			out = append(out, r)
		}
	}
	return out, fates
}

// Submission is what a submitter says about a message before its bytes.
type Submission struct {
	Sender     addr.Mailbox
	Lifetime   time.Duration
	Recipients []addr.Mailbox
	Lists      []string
}

// Draft is a message being written. Nothing of it is visible until Commit
// returns; Abort (or a crash) leaves nothing but a temporary file, which the
// store removes.
type Draft struct {
	a      *Account
	env    *Envelope
	lim    Limits
	f      *os.File
	w      *bufio.Writer
	size   int64 // message bytes written, without the envelope
	err    error // sticky: the first write error
	closed bool
	posted time.Time // when the list entries were made: just before the commit
}

// NewDraft starts a message: it checks the envelope, gives the message and
// each list a fresh identifier and each recipient one derived from the
// message's (rid.go), and writes the envelope to a temporary file.
func (a *Account) NewDraft(sub Submission, lim Limits) (*Draft, error) {
	if len(sub.Recipients) == 0 && len(sub.Lists) == 0 {
		return nil, ErrNoRecipients
	}
	if sub.Lifetime <= 0 || sub.Lifetime > maxLifetime {
		return nil, fmt.Errorf("lifetime %v out of range", sub.Lifetime)
	}
	rcpts, _ := Collapse(sub.Recipients, 0)
	if lim.MaxRcpt > 0 && len(rcpts) > lim.MaxRcpt {
		return nil, fmt.Errorf("%w: %d, the limit is %d", ErrTooManyRecipients, len(rcpts), lim.MaxRcpt)
	}
	env := &Envelope{
		ID:        msgid.New(),
		Sender:    sub.Sender,
		Submitted: time.Now().Truncate(time.Second),
		Lifetime:  sub.Lifetime.Truncate(time.Second),
	}
	for i, r := range rcpts {
		// Derived under the store's key, so that no file per
		// recipient is needed to find the message (rid.go).
		env.Recipients = append(env.Recipients, Recipient{ID: a.s.recipientID(env.ID, i), Addr: r})
	}
	lists := map[string]bool{}
	for _, name := range sub.Lists {
		if err := CheckListName(name); err != nil {
			return nil, err
		}
		if !lists[name] { // a list named twice is posted to once
			lists[name] = true
			env.Lists = append(env.Lists, List{ID: msgid.New(), Name: name})
		}
	}
	a.cleanTmp(time.Now())
	f, err := os.OpenFile(a.path("tmp", env.ID), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	d := &Draft{a: a, env: env, lim: lim, f: f, w: bufio.NewWriterSize(f, 64<<10), posted: env.Submitted}
	if _, err := d.w.Write(env.Marshal()); err != nil {
		d.Abort()
		return nil, err
	}
	return d, nil
}

// Envelope returns the draft's envelope, identifiers included.
func (d *Draft) Envelope() *Envelope { return d.env }

// Size is the number of message bytes written so far.
func (d *Draft) Size() int64 { return d.size }

// Write appends message bytes. Past the size limit it fails with
// ErrTooLarge and keeps failing; the draft can then only be aborted.
func (d *Draft) Write(p []byte) (int, error) {
	if d.err != nil {
		return 0, d.err
	}
	if d.lim.MaxMessage > 0 && d.size+int64(len(p)) > d.lim.MaxMessage {
		d.err = ErrTooLarge
		return 0, d.err
	}
	n, err := d.w.Write(p)
	d.size += int64(n)
	if err != nil {
		d.err = err
	}
	return n, err
}

// Abort drops the draft and everything it wrote.
func (d *Draft) Abort() {
	if d.closed {
		return
	}
	d.closed = true
	d.f.Close()
	os.Remove(d.f.Name())
}

// Commit makes the message durable and visible, with its status sidecar,
// its queue entry and its index entries, and returns its envelope. On error
// nothing of the message remains.
func (d *Draft) Commit() (*Envelope, error) {
	if d.closed {
		return nil, errors.New("draft already closed")
	}
	err := d.commit()
	if err != nil {
		d.undo()
		d.Abort()
		return nil, err
	}
	d.closed = true
	d.f.Close()
	d.a.s.Trigger(d.a.Name)
	return d.env, nil
}

// entries are the links that index the message, each with the directory
// that must be fsynced to make it durable.
type entry struct{ link, target string }

func (d *Draft) entries() []entry {
	a, env := d.a, d.env
	msgFromRoot := filepath.Join("..", a.Name, "msg", env.ID.String())
	es := []entry{{a.path("todo", env.ID), filepath.Join("..", "msg", env.ID.String())},
		{a.expirePath(env), filepath.Join("..", "..", "msg", env.ID.String())}} // expire.go
	// One link for all the recipients: their ids lead to it (rid.go).
	// An id not derived (none that NewDraft makes) needs its own.
	if len(env.Recipients) > 0 {
		es = append(es, entry{a.s.locatorPath(env.ID), msgFromRoot})
	}
	for i, r := range env.Recipients {
		if !a.s.derived(env, i) {
			es = append(es, entry{a.s.rcptPath(r.ID), msgFromRoot})
		}
	}
	for _, l := range env.Lists {
		es = append(es, entry{a.s.rcptPath(l.ID), msgFromRoot})
		es = append(es, entry{a.s.listEntry(l.Name, d.posted, l.ID), filepath.Join("..", "..", msgFromRoot)})
	}
	return es
}

func (d *Draft) commit() error {
	a, env := d.a, d.env
	if d.err != nil {
		return d.err
	}
	if err := d.w.Flush(); err != nil {
		return err
	}
	if d.lim.Quota > 0 {
		// Fail early, before the fsyncs; checked again at the rename.
		if used, ok := a.peekUsage(); ok && used+d.size > d.lim.Quota {
			return ErrQuota
		}
	}
	if err := d.f.Sync(); err != nil {
		return err
	}
	// List entries carry the time of the commit, not of the submission's
	// start, so that ScanList's endtime (see ScanLag) never passes over a
	// message still being written. The snapshot keeps it, for a removal
	// to unlink the entries by name.
	d.posted = time.Now()
	st := initialStatus(env)
	if len(env.Lists) > 0 {
		st.posted = d.posted.Unix()
	}
	snap := a.marshalStatus(env.ID, st)
	if err := durable.WriteFile(a.path("status", env.ID), snap, 0o600, filepath.Join(a.dir, "tmp")); err != nil {
		return err
	}
	dirs := map[string]bool{}
	if err := a.makeExpireDay(env); err != nil {
		return err
	}
	for _, l := range env.Lists {
		if err := a.s.makeListDay(l.Name, d.posted); err != nil {
			return err
		}
	}
	for _, e := range d.entries() {
		if err := os.Symlink(e.target, e.link); err != nil {
			return err
		}
		dirs[filepath.Dir(e.link)] = true
	}
	for dir := range dirs {
		if err := durable.SyncDir(dir); err != nil {
			return err
		}
	}
	fi, err := d.f.Stat()
	if err != nil {
		return err
	}
	// The quota's check and counter and the rename are one step under the
	// counter's lock (usage.go), so that two commits never both take the
	// last room.
	u, err := a.lockUsage()
	if err != nil {
		return err
	}
	defer u.unlock()
	if d.lim.Quota > 0 {
		used, err := u.total()
		if err != nil {
			return err
		}
		if used+d.size > d.lim.Quota {
			return ErrQuota
		}
	}
	return u.change(fi.Size(), func() error {
		// The commit point.
		if err := os.Rename(d.f.Name(), a.path("msg", env.ID)); err != nil {
			return err
		}
		if err := durable.SyncDir(filepath.Join(a.dir, "msg")); err != nil {
			// Not known to be durable: take it back, so that a failure
			// report never leaves a message behind that the sender will
			// submit again.
			os.Remove(a.path("msg", env.ID))
			return err
		}
		return nil
	})
}

// undo removes whatever commit made before it failed.
func (d *Draft) undo() {
	for _, e := range d.entries() {
		if target, err := os.Readlink(e.link); err == nil && target == e.target {
			os.Remove(e.link)
		}
	}
	os.Remove(d.a.path("status", d.env.ID))
}

func (s *Store) listDay(name string, t time.Time) string {
	return filepath.Join(s.Root, "lists", name, t.UTC().Format("2006-01-02"))
}

func (s *Store) listEntry(name string, t time.Time, id msgid.ID) string {
	return filepath.Join(s.listDay(name, t), strconv.FormatInt(t.Unix(), 10)+"."+id.String())
}

func (s *Store) makeListDay(name string, t time.Time) error {
	if _, err := durable.Mkdir(filepath.Join(s.Root, "lists", name), 0o700); err != nil {
		return err
	}
	_, err := durable.Mkdir(s.listDay(name, t), 0o700)
	return err
}
