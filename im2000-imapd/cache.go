package main

// The body cache: what a session fetched from a store, kept in
// imapstate/USER/cache, one file per message and kind ("all", the whole
// message; "hdr", its header as headersonly brought it), so that a client
// fetching the same message again (many do: headers, then the body, then
// the body again in another session) does not make the store serve it
// again. A file is written to a temporary name, fsynced and renamed: a
// crash leaves a whole file or none (temporary files are swept at the next
// scan; a name lost with an unsynced directory means one more fetch).
// The cache is bounded by imapcachebytes per user, across all the user's
// sessions and processes (a count kept under the cache's lock, put):
// past it, the files least recently written go first; a message expunged
// takes its files along. The files are the store's octets with the reader's trace
// fields, as RetrieveTo writes them, and nothing more is kept about them.

import (
	"bufio"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/emersion/go-imap/v2"
	"golang.org/x/sys/unix"

	"im2000/lib/durable"
)

type cache struct {
	dir     string
	max     int64
	scanned bool // this session counted the files once (a crash may have lost a count)
	// structs holds the BODYSTRUCTUREs this session computed from whole
	// messages (a message's content never changes), at most maxStructs.
	structs map[string]imap.BodyStructure
	mu      sync.Mutex // structs: an expunge seen in IDLE removes
}

const maxStructs = 1000

func (c *cache) structure(name string) imap.BodyStructure {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.structs[name]
}

func (c *cache) keepStructure(name string, bs imap.BodyStructure) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.structs == nil || len(c.structs) >= maxStructs {
		c.structs = map[string]imap.BodyStructure{}
	}
	c.structs[name] = bs
}

func newCache(dir string, max int64) *cache { return &cache{dir: dir, max: max} }

func (c *cache) path(name, kind string) string { return filepath.Join(c.dir, name+"."+kind) }

// open returns the cached file, or nil.
func (c *cache) open(name, kind string) *os.File {
	f, err := os.Open(c.path(name, kind))
	if err != nil {
		return nil
	}
	return f
}

// put writes what fill writes to the cache under name and kind, durably,
// and returns the file open at its start.
func (c *cache) put(name, kind string, fill func(w io.Writer) (int64, error)) (*os.File, error) {
	if _, err := durable.Mkdir(c.dir, 0o700); err != nil {
		return nil, err
	}
	tmp, err := os.CreateTemp(c.dir, ".tmp.")
	if err != nil {
		return nil, err
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	bw := bufio.NewWriterSize(tmp, 64<<10)
	n, err := fill(bw)
	if err == nil {
		err = bw.Flush()
	}
	if err == nil && durableWrites {
		err = tmp.Sync()
	}
	// The content is fsynced before the rename, so a name never leads to
	// a torn file; the directory is not: a crash may lose the name of a
	// file just written, and the message is fetched again (one fsync a
	// message, not two, in mbsync's pull of a whole mailbox).
	if err != nil {
		return nil, err
	}
	// The bound holds for all the user's sessions and processes: the
	// cache's size is counted in its lock file, under its flock, by every
	// writer; past the bound (or unknown), the files are counted again
	// and the oldest go.
	lock, total := c.lock()
	err = os.Rename(tmp.Name(), c.path(name, kind))
	if err == nil {
		if total < 0 || !c.scanned || total+n > c.max {
			total = c.evict(name)
		} else {
			total += n
		}
	}
	c.unlock(lock, total)
	if err != nil {
		return nil, err
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	done = true
	return tmp, nil
}

// lockName is the cache's lock file, which holds the octets of the files
// in the cache: an upper bound (a file replaced or removed is counted
// until the next count of the files).
const lockName = ".lock"

// lock takes the cache's lock and returns it with the count it holds (-1:
// none, or no lock: the files are counted).
func (c *cache) lock() (*os.File, int64) {
	f, err := os.OpenFile(filepath.Join(c.dir, lockName), os.O_RDWR|os.O_CREATE|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, -1
	}
	if unix.Flock(int(f.Fd()), unix.LOCK_EX) != nil {
		f.Close()
		return nil, -1
	}
	var buf [24]byte
	n, _ := f.ReadAt(buf[:], 0)
	total, err := strconv.ParseInt(strings.TrimSpace(string(buf[:n])), 10, 64)
	if err != nil || total < 0 {
		total = -1
	}
	return f, total
}

// unlock writes the count and releases the lock (closing the file does).
func (c *cache) unlock(f *os.File, total int64) {
	if f == nil {
		return
	}
	if f.Truncate(0) == nil {
		f.WriteAt([]byte(strconv.FormatInt(total, 10)+"\n"), 0)
	}
	f.Close()
}

// remove drops a message's files.
func (c *cache) remove(name string) {
	c.mu.Lock()
	delete(c.structs, name)
	c.mu.Unlock()
	for _, kind := range []string{"all", "hdr"} {
		os.Remove(c.path(name, kind))
	}
}

// evict counts the cache's files and removes the oldest until the rest
// fit in max, keeping keep's (just written: the client is about to read
// it). Temporary files older than an hour are debris of a crash.
func (c *cache) evict(keep string) int64 {
	ents, err := os.ReadDir(c.dir)
	if err != nil {
		return -1
	}
	type file struct {
		name string
		size int64
		mod  time.Time
	}
	var files []file
	var total int64
	for _, e := range ents {
		fi, err := e.Info()
		if err != nil {
			continue
		}
		if strings.HasPrefix(e.Name(), ".tmp.") && time.Since(fi.ModTime()) > time.Hour {
			os.Remove(filepath.Join(c.dir, e.Name()))
		}
		if strings.HasPrefix(e.Name(), ".") { // the lock, files being written
			continue
		}
		files = append(files, file{e.Name(), fi.Size(), fi.ModTime()})
		total += fi.Size()
	}
	sort.Slice(files, func(i, j int) bool { return files[i].mod.Before(files[j].mod) })
	// Past the bound, down to 90% of it: each count lists every file, and
	// evicting to the bound exactly made every later put count again.
	low := total
	if total > c.max {
		low = c.max - c.max/10
	}
	for _, f := range files {
		if total <= low {
			break
		}
		if strings.HasPrefix(f.name, keep+".") {
			continue
		}
		if os.Remove(filepath.Join(c.dir, f.name)) == nil {
			total -= f.size
		}
	}
	c.scanned = true
	return total
}
