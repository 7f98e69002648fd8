package inbox

// Held notifications: those the reader's sender policy (lib/policy) keeps
// unretrieved until the user accepts them. They live in a second box of
// the pending spool, "held", under the same file names (agent.Key), so a
// re-send of a held notification collapses into it when it is held again.
// Moving between the boxes is one rename, fsynced on both sides: after a
// crash an entry is in exactly one of them.
//
// Each held entry has its verified sender beside it (held.sender/NAME,
// written before the entry is moved): later runs decide it on that, with
// no DNS and no routes, so a domain whose DNS stops answering costs
// nothing per run (DESIGN-NOTES.md, "Known and unknown senders"). The
// binding is checked again when the entry is released (Bound, and every
// call to a store). The box is bounded: entries older than maxlifetime and
// the oldest beyond maxheld are dropped, each with a log line, so a run
// reads at most maxheld held entries plus those it holds itself.

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"im2000/lib/addr"
	"im2000/lib/agent"
	"im2000/lib/conf"
	"im2000/lib/durable"
	"im2000/lib/fail"
)

const (
	pendingBox = "pending"
	heldBox    = "held"
	senderBox  = "held.sender" // the verified sender of each held entry
)

// DefaultMaxHeld is the maxheld setting's default.
var DefaultMaxHeld = int(conf.Default("maxheld"))

// mkdir creates a box of the spool, making its name durable.
func (b *Inbox) mkdir(box string) error {
	if _, err := durable.Mkdir(filepath.Join(b.pending.Dir, box), 0o700); err != nil {
		return fail.Temp(err)
	}
	return nil
}

// Hold moves pending entries to the held box, each with its verified
// sender (senders[i] is es[i]'s); their stores are not contacted. The
// senders are written first: an entry in the held box without one (a
// crash in between) is dropped by Held, and its store sends it again.
// One fsync per sender file and three of directories, whatever the count.
func (b *Inbox) Hold(es []agent.Entry, senders []addr.Mailbox) error {
	if len(es) == 0 {
		return nil
	}
	for _, box := range []string{heldBox, senderBox} {
		if err := b.mkdir(box); err != nil {
			return err
		}
	}
	dir := b.pending.Dir
	sd := filepath.Join(dir, senderBox)
	for i, e := range es {
		if err := writeSynced(sd, e.Name, senders[i].String()); err != nil {
			return fail.Temp(err)
		}
	}
	if err := durable.SyncDir(sd); err != nil {
		return fail.Temp(err)
	}
	for _, e := range es {
		if err := os.Rename(filepath.Join(dir, pendingBox, e.Name), filepath.Join(dir, heldBox, e.Name)); err != nil {
			return fail.Temp(err)
		}
	}
	for _, box := range []string{heldBox, pendingBox} {
		if err := durable.SyncDir(filepath.Join(dir, box)); err != nil {
			return fail.Temp(err)
		}
	}
	return nil
}

// writeSynced writes name in dir through a temporary file, fsynced; the
// caller fsyncs dir.
func writeSynced(dir, name, content string) error {
	tmp := filepath.Join(dir, ".tmp."+name)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.WriteString(content)
	if serr := f.Sync(); err == nil {
		err = serr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, name))
}

// Release moves a held entry back to the pending queue, to be retrieved.
// Its binding is checked again there (Bound, and every store call).
func (b *Inbox) Release(e agent.Entry) error {
	dir := b.pending.Dir
	if err := os.Rename(filepath.Join(dir, heldBox, e.Name), filepath.Join(dir, pendingBox, e.Name)); err != nil {
		return fail.Temp(err)
	}
	for _, box := range []string{pendingBox, heldBox} {
		if err := durable.SyncDir(filepath.Join(dir, box)); err != nil {
			return fail.Temp(err)
		}
	}
	os.Remove(filepath.Join(dir, senderBox, e.Name)) // pruned by Held if this fails
	return nil
}

// HeldEntry is a held notification and its sender as verified when it
// was held.
type HeldEntry struct {
	agent.Entry
	Sender addr.Mailbox
}

// HeldDrop is a held entry the next Held drops, and why.
type HeldDrop struct {
	agent.Entry
	Why string
}

// maxSenderFile bounds the read of a sender file (a mailbox is at most
// 320 octets; lib/binding refuses longer).
const maxSenderFile = 1024

// ScanHeld lists the held box without changing it: the entries that stay
// held, oldest first, with their stored senders, and those the next Held
// drops (older than maxlifetime, without a readable stored sender, or the
// oldest beyond max). No DNS, no store: --summary shows it as it is.
func (b *Inbox) ScanHeld(max int) (keep []HeldEntry, drop []HeldDrop, err error) {
	l, err := b.pending.List(heldBox, 1<<30)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	// Oldest first by the notification's date (a re-send refreshes it),
	// then as List has them (by the file's time).
	sort.SliceStable(l, func(i, j int) bool { return l[i].N.Date < l[j].N.Date })
	now := b.now()
	for _, e := range l {
		date := time.Unix(int64(min(e.N.Date, 1<<62)), 0)
		if b.life > 0 && now.Sub(date) > b.life {
			drop = append(drop, HeldDrop{e, fmt.Sprintf("held since %s, longer than maxlifetime (%d seconds)",
				date.UTC().Format(time.RFC3339), int64(b.life/time.Second))})
			continue
		}
		s, err := b.storedSender(e.Name)
		if err != nil {
			drop = append(drop, HeldDrop{e, "no verified sender stored with it (" + err.Error() + ")"})
			continue
		}
		keep = append(keep, HeldEntry{e, s})
	}
	if max >= 0 && len(keep) > max {
		n := len(keep) - max
		for _, h := range keep[:n] {
			drop = append(drop, HeldDrop{h.Entry, fmt.Sprintf("the oldest of %d held, over maxheld (%d)", len(keep), max)})
		}
		keep = keep[n:]
	}
	return keep, drop, nil
}

func (b *Inbox) storedSender(name string) (addr.Mailbox, error) {
	f, err := os.Open(filepath.Join(b.pending.Dir, senderBox, name))
	if err != nil {
		return addr.Mailbox{}, err
	}
	defer f.Close()
	raw, err := io.ReadAll(io.LimitReader(f, maxSenderFile))
	if err != nil {
		return addr.Mailbox{}, err
	}
	return addr.Parse(string(raw))
}

// Held lists the held entries that stay held, oldest first, with their
// stored senders, after dropping those ScanHeld says to drop, with one log
// line each (LogPrefix after its event). Sender files of entries gone are
// removed.
func (b *Inbox) Held(max int) ([]HeldEntry, error) {
	keep, drop, err := b.ScanHeld(max)
	if err != nil {
		return nil, fail.Temp(err)
	}
	var gone []agent.Entry
	for _, d := range drop {
		logHeldDropped(b.LogPrefix, d.Name, &d.N.Notification, d.Why)
		gone = append(gone, d.Entry)
	}
	if err := b.DropHeld(gone); err != nil {
		return nil, err
	}
	names := map[string]bool{}
	for _, h := range keep {
		names[h.Name] = true
	}
	sd := filepath.Join(b.pending.Dir, senderBox)
	ents, _ := os.ReadDir(sd)
	for _, f := range ents {
		if !names[f.Name()] || strings.HasPrefix(f.Name(), ".tmp.") {
			os.Remove(filepath.Join(sd, f.Name()))
		}
	}
	return keep, nil
}

// DropHeld removes held entries (denied, expired, over maxheld), their
// stores never contacted; one fsync of the box.
func (b *Inbox) DropHeld(es []agent.Entry) error {
	if len(es) == 0 {
		return nil
	}
	dir := filepath.Join(b.pending.Dir, heldBox)
	for _, e := range es {
		if err := os.Remove(filepath.Join(dir, e.Name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fail.Temp(err)
		}
		os.Remove(filepath.Join(b.pending.Dir, senderBox, e.Name))
	}
	if err := durable.SyncDir(dir); err != nil {
		return fail.Temp(err)
	}
	return nil
}

// Marks are empty files named after entries, in a directory of the
// pending spool per kind of mark ("accepted": the user accepted this one
// notification; "noticed": im2000-pop3d showed its notice). A mark
// outlives its entry's moves between boxes; PruneMarks removes those of
// entries that are gone.

func (b *Inbox) markDir(kind string) string { return filepath.Join(b.pending.Dir, "mark."+kind) }

// Mark sets a mark on an entry, durably.
func (b *Inbox) Mark(kind string, e agent.Entry) error {
	if err := b.mkdir("mark." + kind); err != nil {
		return err
	}
	dir := b.markDir(kind)
	f, err := os.OpenFile(filepath.Join(dir, e.Name), os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		return fail.Temp(err)
	}
	f.Close()
	if err := durable.SyncDir(dir); err != nil {
		return fail.Temp(err)
	}
	return nil
}

// Marked reports whether an entry has a mark.
func (b *Inbox) Marked(kind string, e agent.Entry) bool {
	_, err := os.Lstat(filepath.Join(b.markDir(kind), e.Name))
	return err == nil
}

// PruneMarks removes the marks of the entries not in keep (by name).
func (b *Inbox) PruneMarks(kind string, keep map[string]bool) {
	ents, _ := os.ReadDir(b.markDir(kind))
	for _, m := range ents {
		if !keep[m.Name()] {
			os.Remove(filepath.Join(b.markDir(kind), m.Name()))
		}
	}
}

// Accept marks a held entry accepted and releases it: the mark comes
// first, so that after a crash in between the entry is released on the
// next run, and a re-send of it is not held again before it is fetched.
func (b *Inbox) Accept(e agent.Entry) error {
	if err := b.Mark("accepted", e); err != nil {
		return err
	}
	return b.Release(e)
}

// Accepted reports whether the user accepted this notification.
func (b *Inbox) Accepted(e agent.Entry) bool { return b.Marked("accepted", e) }
