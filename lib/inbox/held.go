package inbox

// Held notifications: those the reader's sender policy (lib/policy) keeps
// unretrieved until the user accepts them. They live in a second box of
// the pending spool, "held", under the same file names (agent.Key), so a
// re-send of a held notification collapses into it when it is held again.
// Moving between the boxes is one rename, fsynced on both sides: after a
// crash an entry is in exactly one of them.

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"

	"im2000/lib/agent"
	"im2000/lib/durable"
	"im2000/lib/fail"
)

const (
	pendingBox = "pending"
	heldBox    = "held"
)

// move renames an entry from one box to another, durably.
func (b *Inbox) move(e agent.Entry, from, to string) error {
	dir := b.pending.Dir
	if err := os.MkdirAll(filepath.Join(dir, to), 0o700); err != nil {
		return fail.Temp(err)
	}
	if err := os.Rename(filepath.Join(dir, from, e.Name), filepath.Join(dir, to, e.Name)); err != nil {
		return fail.Temp(err)
	}
	if err := durable.SyncDir(filepath.Join(dir, to)); err != nil {
		return fail.Temp(err)
	}
	if err := durable.SyncDir(filepath.Join(dir, from)); err != nil {
		return fail.Temp(err)
	}
	return nil
}

// Hold moves a pending entry to the held box; its store is not contacted.
func (b *Inbox) Hold(e agent.Entry) error { return b.move(e, pendingBox, heldBox) }

// Release moves a held entry back to the pending queue, to be retrieved.
func (b *Inbox) Release(e agent.Entry) error { return b.move(e, heldBox, pendingBox) }

// Held lists the held entries, oldest first.
func (b *Inbox) Held() ([]agent.Entry, error) {
	l, err := b.pending.List(heldBox, 1<<30)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return l, err
}

// DropHeld removes a held entry (its sender is now denied), its store
// never contacted.
func (b *Inbox) DropHeld(e agent.Entry) error {
	dir := filepath.Join(b.pending.Dir, heldBox)
	if err := os.Remove(filepath.Join(dir, e.Name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fail.Temp(err)
	}
	return durable.SyncDir(dir)
}

// Marks are empty files named after entries, in a directory of the
// pending spool per kind of mark ("accepted": the user accepted this one
// notification; "noticed": im2000-pop3d showed its notice). A mark
// outlives its entry's moves between boxes; PruneMarks removes those of
// entries that are gone.

func (b *Inbox) markDir(kind string) string { return filepath.Join(b.pending.Dir, "mark."+kind) }

// Mark sets a mark on an entry, durably.
func (b *Inbox) Mark(kind string, e agent.Entry) error {
	dir := b.markDir(kind)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fail.Temp(err)
	}
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
