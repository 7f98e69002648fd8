// The Limiter's bucket files: reading and rewriting one under its lock,
// sweeping those with nothing left to remember, and their format.

package auth

import (
	"bytes"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"im2000/lib/session"
)

// maxRecord bounds what is read of a file: maxAddrs records of up to
// maxAccounts+2 lines of at most about 110 octets.
const maxRecord = 256 << 10

// update reads the bucket of a under its lock, lets change modify a's
// record, and writes the bucket back (or removes the file when nothing is
// left to remember in it). The new content is written over the old before
// the file is cut to its length: a write that fails for want of space
// leaves the old content whole, where truncating first would lose it.
func (l *Limiter) update(a netip.Addr, now time.Time, change func(*record)) error {
	path, key := l.key(a)
	f, err := session.LockFile(path, true)
	if err != nil {
		return err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxRecord))
	if err != nil {
		return err
	}
	bk := parseBucket(b)
	for k, r := range bk {
		if r.expire(now, l.window()); r.empty(now) {
			delete(bk, k)
		}
	}
	r := bk[key]
	if r == nil {
		r = &record{accounts: map[string]count{}}
	}
	change(r)
	if r.empty(now) {
		delete(bk, key)
	} else {
		bk[key] = r
	}
	bk.trim()
	if len(bk) == 0 {
		// Removed while locked: LockFile in another process notices.
		return os.Remove(path)
	}
	enc := bk.encode()
	if _, err := f.WriteAt(enc, 0); err != nil {
		return err
	}
	return f.Truncate(int64(len(enc)))
}

// sweep removes the files with nothing left to remember, at most once a
// minute per directory, so that the directory holds only the buckets of
// addresses that failed within the window (and, after an upgrade, the
// one-per-address files of the older format, untouched since).
func (l *Limiter) sweep(now time.Time) {
	mark := filepath.Join(l.Dir, ".swept")
	if fi, err := os.Stat(mark); err == nil && now.Sub(fi.ModTime()) < time.Minute {
		return
	}
	if err := os.WriteFile(mark, nil, 0o600); err != nil {
		return
	}
	os.Chtimes(mark, now, now)
	d, err := os.Open(l.Dir)
	if err != nil {
		return
	}
	defer d.Close()
	ents, _ := d.ReadDir(10000) // the rest next time
	for _, e := range ents {
		fi, err := e.Info()
		if err != nil || strings.HasPrefix(e.Name(), ".") || !fi.Mode().IsRegular() || now.Sub(fi.ModTime()) < l.window() {
			continue
		}
		path := filepath.Join(l.Dir, e.Name())
		f, err := session.LockFile(path, false)
		if err != nil {
			continue // in use
		}
		if fi, err := f.Stat(); err == nil && now.Sub(fi.ModTime()) >= l.window() {
			os.Remove(path) // untouched for a window: everything in it has expired
		}
		f.Close()
	}
}

// bucket is one file: the records of the addresses whose keys hash to it.
type bucket map[string]*record

// trim keeps the maxAddrs addresses active most recently.
func (bk bucket) trim() {
	if len(bk) <= maxAddrs {
		return
	}
	keys := make([]string, 0, len(bk))
	for k := range bk {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return bk[keys[i]].active() > bk[keys[j]].active() })
	for _, k := range keys[maxAddrs:] {
		delete(bk, k)
	}
}

// encode writes each record's lines (record.encode) prefixed by its key.
func (bk bucket) encode() []byte {
	keys := make([]string, 0, len(bk))
	for k := range bk {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b bytes.Buffer
	for _, k := range keys {
		for _, line := range strings.SplitAfter(string(bk[k].encode()), "\n") {
			if line != "" {
				b.WriteString(k + " " + line)
			}
		}
	}
	return b.Bytes()
}

// parseBucket reads what encode wrote; lines it does not know, keys that
// are not address keys, and addresses past maxAddrs are skipped.
func parseBucket(b []byte) bucket {
	lines := map[string][]byte{}
	var order []string
	for _, line := range bytes.SplitAfter(b, []byte("\n")) {
		k, rest, ok := bytes.Cut(line, []byte(" "))
		if !ok || !validKey(string(k)) {
			continue
		}
		if _, seen := lines[string(k)]; !seen {
			if len(order) >= maxAddrs {
				continue
			}
			order = append(order, string(k))
		}
		lines[string(k)] = append(lines[string(k)], rest...)
	}
	bk := bucket{}
	for _, k := range order {
		bk[k] = parseRecord(lines[k])
	}
	return bk
}

// validKey accepts what Limiter.key makes: an address key of
// session.AddrKey ("1.2.3.4", "2001_db8__-64") or "local".
func validKey(k string) bool {
	if k == "" || len(k) > 64 {
		return false
	}
	for _, c := range k {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
