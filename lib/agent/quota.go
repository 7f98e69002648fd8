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

	"golang.org/x/sys/unix"
)

// Limits bound what a spool keeps. Zero means no limit.
type Limits struct {
	Count         int64 // notifications kept per account
	Bytes         int64 // octets of notifications kept per account
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

// counter is an account's count of kept notifications and their octets,
// in <spool>/.count/<account>, held under an exclusive flock while it is
// read and changed. Under tcpserver every session is its own process, so
// the count lives in a file, not in memory; the flock serialises agentd's
// Puts and queryd's Removes. It is not fsynced: after a crash it may be a
// little off, and the recount mends it (see recountEvery). An unreadable
// or new counter is rebuilt from the directory once.
type counter struct {
	f                     *os.File
	dir                   string // the account's directory
	count, bytes, checked int64
}

func (s *Spool) countPath(account string) string { return filepath.Join(s.Dir, ".count", account) }

func (s *Spool) lockCount(account string) (*counter, error) {
	path := s.countPath(account)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if errors.Is(err, fs.ErrNotExist) { // a spool made before counters
		if err = os.MkdirAll(filepath.Dir(path), 0o700); err == nil {
			f, err = os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
		}
	}
	if err != nil {
		return nil, err
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	c := &counter{f: f, dir: filepath.Join(s.Dir, account)}
	var buf [128]byte
	n, err := f.ReadAt(buf[:], 0)
	if err != nil && err != io.EOF {
		f.Close()
		return nil, err
	}
	if !c.parse(string(buf[:n])) {
		if err := c.recount(time.Now()); err != nil {
			f.Close()
			return nil, err
		}
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

// recount counts the account's directory. It reads every entry, so it is
// done only when the counter is lost or says full (at most every
// recountEvery).
func (c *counter) recount(now time.Time) error {
	d, err := os.Open(c.dir)
	if err != nil {
		return err
	}
	defer d.Close()
	c.count, c.bytes, c.checked = 0, 0, now.Unix()
	for {
		ents, err := d.ReadDir(1024)
		for _, e := range ents {
			if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() {
				c.count++
				c.bytes += fi.Size()
			}
		}
		if err == io.EOF || len(ents) == 0 {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// save writes the counter back in place. One short write of a few dozen
// octets; a torn one is unparsable and rebuilt.
func (c *counter) save() error {
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

// Room is the space left for notifications on the spool's filesystem
// above the reserve, as statfs(2) said at the start of a Notify, less what
// has been written since.
type Room struct {
	Left  int64 // octets above the reserve
	Block int64 // the filesystem's block size: what the smallest file takes
}

// Room asks the filesystem how much the spool may still use. Free inodes
// below the inode reserve leave no room at all.
func (s *Spool) Room() (*Room, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(s.Dir, &st); err != nil {
		return nil, err
	}
	r := &Room{Left: int64(st.Bavail)*int64(st.Bsize) - s.Limits.Reserve, Block: max(int64(st.Bsize), 512)}
	if s.Limits.ReserveInodes > 0 && st.Files > 0 && int64(st.Ffree) < s.Limits.ReserveInodes {
		r.Left = 0
	}
	return r, nil
}

// cost is what a file of n octets takes on disk, at most.
func (r *Room) cost(n int) int64 { return (int64(n) + r.Block - 1) / r.Block * r.Block }

// fits says whether one more notification of n octets may be kept for the
// account the counter counts: within its quotas and, when room is given,
// above the disk reserve, with the account holding no more than what is
// left free above the reserve after the write. So one recipient's flood
// stops at half of the space there was, and the next recipient's
// notification still fits: no single recipient can take the disk.
func (s *Spool) fits(c *counter, n int, room *Room) bool {
	l := s.Limits
	if l.Count > 0 && c.count+1 > l.Count || l.Bytes > 0 && c.bytes+int64(n) > l.Bytes {
		return false
	}
	if room == nil {
		return true
	}
	cost := room.cost(n)
	used := c.bytes + c.count*room.Block // an upper bound of what the account's files take
	return room.Left-cost >= 0 && used+cost <= room.Left-cost
}

// diskFull reports the errors of a filesystem (or a disk quota) that has
// no room: the notification is answered full, not an internal problem.
func diskFull(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}
