package agent

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Limits bound what a spool keeps. Zero means no limit.
type Limits struct {
	Count         int64 // notifications kept per account
	Bytes         int64 // octets of notifications kept per account
	PerAddr       int64 // notifications kept from one submitting address (see held.go)
	Reserve       int64 // octets left free on the spool's filesystem
	ReserveInodes int64 // inodes left free there
}

// ErrFull is a notification the spool will not take now: the account is
// at its quota, or the disk at its reserve. RNASP answers it `full`, which
// is temporary: the store sends the notification again later.
var ErrFull = errors.New("full")

// recountEvery is how often, at most, a counter that says "full" is
// checked against the directory itself. A count can drift (a crash between
// a rename and the counter's update, a file removed by hand); this bounds
// a drift that would keep a recipient full for nothing, while a flood of
// notifications to a full spool costs one directory listing in ten minutes,
// not one each.
const recountEvery = 10 * time.Minute

// counter is a count of kept notifications and their octets, in a small
// file held under an exclusive flock while it is read and changed: an
// account's in <spool>/.count/<account>, a submitting address's and an
// (address, account) pair's in <spool>/.held/ (see held.go). Under
// tcpserver every session is its own process, so the count lives in a
// file, not in memory; the flock serialises agentd's Puts and queryd's
// Removes. It is not fsynced: after a crash it may be a little off, and
// the recount mends it (see recountEvery). An unreadable counter is
// rebuilt by recount.
type counter struct {
	f                     *os.File
	path                  string
	count, bytes, checked int64
	// rebuild counts what the counter counts from the spool itself.
	rebuild func() (count, bytes int64, err error)
	// dropEmpty removes the file when the count falls to 0 (an empty
	// or missing file then means 0): address counters, one per address
	// heard from, must not pile up.
	dropEmpty bool
}

func (s *Spool) countPath(account string) string { return filepath.Join(s.Dir, ".count", account) }

func (s *Spool) lockCount(account string) (*counter, error) {
	dir := filepath.Join(s.Dir, account)
	return lockCounter(s.countPath(account), func() (int64, int64, error) { return countDir(dir, "") }, false)
}

// lockCounter opens and locks the counter in path. With dropEmpty, a
// missing or empty file is a count of 0; otherwise it is rebuilt.
func lockCounter(path string, rebuild func() (int64, int64, error), dropEmpty bool) (*counter, error) {
	f, err := lockLive(path)
	if errors.Is(err, fs.ErrNotExist) { // a spool made before counters
		if err = os.MkdirAll(filepath.Dir(path), 0o700); err == nil {
			f, err = lockLive(path)
		}
	}
	if err != nil {
		return nil, err
	}
	c := &counter{f: f, path: path, rebuild: rebuild, dropEmpty: dropEmpty}
	var buf [128]byte
	n, err := f.ReadAt(buf[:], 0)
	if err != nil && err != io.EOF {
		f.Close()
		return nil, err
	}
	switch {
	case n == 0 && dropEmpty:
		// New: 0 is the truth, as of now (a recount would find only
		// notifications kept before the counters existed).
		c.checked = time.Now().Unix()
	case !c.parse(string(buf[:n])):
		if err := c.recount(time.Now()); err != nil {
			f.Close()
			return nil, err
		}
	default:
		return c, nil
	}
	// A new or rebuilt counter is written at once, not only at close:
	// its block is then taken before the spool's room is measured (Room),
	// so the counters' own files count against the reserve.
	if err := c.write(); err != nil {
		f.Close()
		return nil, err
	}
	return c, nil
}

// parse reads "COUNT BYTES CHECKED\n".
func (c *counter) parse(s string) bool {
	line, ok := strings.CutSuffix(s, "\n")
	f := strings.Fields(line)
	if !ok || len(f) != 3 {
		return false
	}
	var v [3]int64
	for i := range f {
		n, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil || n < 0 {
			return false
		}
		v[i] = n
	}
	c.count, c.bytes, c.checked = v[0], v[1], v[2]
	return true
}

// mayRecount says whether a counter that says full may be checked
// against the spool now: at most every recountEvery, or at once when its
// check time lies in the future (the clock was stepped back, and waiting
// for it to catch up could take any time).
func (c *counter) mayRecount(now time.Time) bool {
	return now.Unix()-c.checked >= int64(recountEvery/time.Second) || c.checked > now.Unix()
}

// recount counts again what the counter counts. It reads directories, so
// it is done only when the counter is lost or says full (at most every
// recountEvery).
func (c *counter) recount(now time.Time) error {
	n, b, err := c.rebuild()
	if err != nil {
		return err
	}
	c.count, c.bytes, c.checked = n, b, now.Unix()
	return nil
}

// countDir counts the notification files in dir, all of them or, when
// key is not empty, those from the submitting address key names.
func countDir(dir, key string) (count, bytes int64, err error) {
	d, err := os.Open(dir)
	if err != nil {
		return 0, 0, err
	}
	defer d.Close()
	for {
		ents, err := d.ReadDir(1024)
		for _, e := range ents {
			fi, err := e.Info()
			if err != nil || !fi.Mode().IsRegular() {
				continue
			}
			if key != "" && submitterKey(filepath.Join(dir, e.Name())) != key {
				continue
			}
			count++
			bytes += fi.Size()
		}
		if err == io.EOF || len(ents) == 0 {
			return count, bytes, nil
		}
		if err != nil {
			return 0, 0, err
		}
	}
}

// save writes the counter back in place. One short write of a few dozen
// octets; a torn one is unparsable and rebuilt.
func (c *counter) save() error {
	if c.dropEmpty && c.count <= 0 {
		// Removed while locked: a process waiting on the lock finds the
		// file unlinked (lockLive) and opens a new one, which says 0.
		return os.Remove(c.path)
	}
	return c.write()
}

func (c *counter) write() error {
	line := fmt.Sprintf("%d %d %d\n", max(c.count, 0), max(c.bytes, 0), c.checked)
	if _, err := c.f.WriteAt([]byte(line), 0); err != nil {
		return err
	}
	return c.f.Truncate(int64(len(line)))
}

// close saves and releases the counter.
func (c *counter) close() error {
	err := c.save()
	if cerr := c.f.Close(); err == nil {
		err = cerr
	}
	return err
}

// take and drop count one notification of n octets in or out.
func (c *counter) take(n int64) { c.count++; c.bytes += n }
func (c *counter) drop(n int64) { c.count, c.bytes = max(c.count-1, 0), max(c.bytes-n, 0) }

// diskFull reports the errors of a filesystem (or a disk quota) that has
// no room: the notification is answered full, not an internal problem.
func diskFull(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}
