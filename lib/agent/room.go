package agent

import (
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Room is the space left for notifications on the spool's filesystem
// above the reserves. A Room from Spool.Room asks statfs(2) again before
// every write (a few microseconds, against the tens a write costs), so
// that sessions writing at once in other processes (tcpserver) see each
// other's files; a Room made by hand is a fixed amount, reduced by what
// is written.
type Room struct {
	Left   int64 // octets above the reserve
	Inodes int64 // inodes above the inode reserve, when CountInodes
	// CountInodes is false on a filesystem without an inode count
	// (btrfs) and in a Room made by hand without it.
	CountInodes bool
	Block       int64 // the filesystem's block size: what the smallest file takes
	s           *Spool
}

// tightBlocks is how close to the reserve (in blocks, or inodes) the room
// is tight: then each write, with its statfs, is done under one lock for
// the whole spool, <spool>/.count/.room, so that sessions in parallel
// cannot each see the same last blocks free and all take them. Above it
// they write in parallel: between a statfs and its write, the others can
// take no more than one notification each, far less than the margin.
const tightBlocks = 256

// Room asks the filesystem how much the spool may still use.
func (s *Spool) Room() (*Room, error) {
	r := &Room{s: s}
	return r, r.refresh()
}

// refresh asks statfs again (a Room made by hand stays as it is).
func (r *Room) refresh() error {
	if r == nil || r.s == nil {
		return nil
	}
	var st unix.Statfs_t
	if err := unix.Statfs(r.s.Dir, &st); err != nil {
		return err
	}
	r.Block = max(int64(st.Bsize), 512)
	r.Left = int64(st.Bavail)*int64(st.Bsize) - r.s.Limits.Reserve
	r.CountInodes = st.Files > 0 // 0: a filesystem without an inode count (btrfs)
	r.Inodes = int64(st.Ffree) - r.s.Limits.ReserveInodes
	return nil
}

// tight says whether the room is close enough to the reserve that writes
// must take turns.
func (r *Room) tight() bool {
	return r.s != nil && (r.Left < tightBlocks*r.Block || r.CountInodes && r.Inodes < tightBlocks)
}

// lock takes the spool's room lock; the returned function releases it.
func (r *Room) lock() (func(), error) {
	f, err := os.OpenFile(filepath.Join(r.s.Dir, ".count", ".room"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := flockEx(f, false); err != nil {
		f.Close()
		return nil, err
	}
	return func() { f.Close() }, nil
}

// wrote takes a file of n octets off the room.
func (r *Room) wrote(n int) {
	r.Left -= r.cost(n)
	r.Inodes--
}

// cost is what a file of n octets takes on disk, at most.
func (r *Room) cost(n int) int64 { return (int64(n) + r.Block - 1) / r.Block * r.Block }

// holders are the counters one notification is kept under: its account's,
// and, when it has a submitting address, that address's and the pair's.
type holders struct {
	acct, addr, pair *counter
}

// fits says whether one more notification of n octets may be kept:
//
//   - within the account's quotas, and within the address's count;
//   - one address may hold no more than half of a recipient's quotas, so
//     one address's flood leaves the other half to every other address;
//   - when room is given, above the disk reserves, with neither the
//     account nor the address holding more (octets and inodes) than what is
//     left free above the reserve after the write: one recipient's flood,
//     or one address's flood across any number of recipients, stops at
//     about half of the room there was, and the next notification from
//     another address for another recipient still fits.
func (s *Spool) fits(h holders, n int, room *Room) bool {
	l, a, nb := s.Limits, h.acct, int64(n)
	if l.Count > 0 && a.count+1 > l.Count || l.Bytes > 0 && a.bytes+nb > l.Bytes {
		return false
	}
	if h.addr != nil {
		if l.PerAddr > 0 && h.addr.count+1 > l.PerAddr {
			return false
		}
		if l.Count > 0 && h.pair.count+1 > l.Count/2 || l.Bytes > 0 && h.pair.bytes+nb > l.Bytes/2 {
			return false
		}
	}
	if room == nil {
		return true
	}
	cost := room.cost(n)
	if room.Left-cost < 0 || room.CountInodes && room.Inodes-1 < 0 {
		return false
	}
	for _, c := range []*counter{a, h.addr} {
		if c == nil {
			continue
		}
		used := c.bytes + c.count*room.Block // an upper bound of what the files take
		if used+cost > room.Left-cost || room.CountInodes && c.count+1 > room.Inodes-1 {
			return false
		}
	}
	return true
}
