package store

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"im2000/lib/msgid"
)

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
