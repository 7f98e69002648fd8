package store

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"im2000/lib/durable"
	"im2000/lib/msgid"
)

// Clean removes the debris of crashed writers: temporary files, and
// sidecars and index entries whose message was never committed or is gone,
// once they are older than StaleAge at time now, and journals a compaction
// replaced. Committed messages are never touched. It also recounts every
// account's usage (usage.go), bounding any drift to one hour.
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
		keep(a.RebuildUsage())
		keep(cleanDir(filepath.Join(a.dir, "todo"), now, danglingLink))
		keep(cleanDir(filepath.Join(a.dir, "queue"), now, danglingLink))
		days, _ := os.ReadDir(filepath.Join(a.dir, "expire")) // expire.go
		for _, d := range days {
			if d.IsDir() {
				keep(cleanDir(filepath.Join(a.dir, "expire", d.Name()), now, danglingLink))
			}
		}
		keep(cleanDir(filepath.Join(a.dir, "status"), now, func(path string) bool {
			// <id>, <id>.<lid>.reads and <id>.<gen>.journal
			f := strings.Split(filepath.Base(path), ".")
			_, err := os.Lstat(filepath.Join(a.dir, "msg", f[0]))
			if errors.Is(err, fs.ErrNotExist) {
				return true
			}
			// A journal a compaction replaced, left by a crash.
			if len(f) != 3 || f[2] != "journal" {
				return false
			}
			id, err1 := msgid.Parse(f[0])
			gen, err2 := strconv.ParseUint(f[1], 10, 64)
			return err1 == nil && err2 == nil && a.staleJournal(id, gen)
		}))
	}
	keep(cleanDir(filepath.Join(s.Root, "rcpt"), now, danglingLink))
	s.cleanKeyTmp(now)
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
// The directory is read a slice at a time: rcpt/ held a link per
// recipient of every archived message (old stores still may), and reading
// it whole took a quarter of a GiB with a million of them.
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
