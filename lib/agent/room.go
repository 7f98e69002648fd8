package agent

import (
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Room is the space left for notifications on the spool's filesystem
// above the reserves. A Room from Spool.Room asks statfs(2) again before
// every write, under one lock for the whole spool, <spool>/.count/.room,
// held from the statfs until the data is written: sessions writing at once
// in other processes (tcpserver) then never spend the same room twice.
// (A statfs per Notify let eight sessions each write into the same last
// megabyte; statfs without the lock still let a session stalled between
// its statfs and its write spend room the others had measured since.) The
// lock is held for a create and a write of a few hundred octets, and let
// go before any fsync. A Room made by hand is a fixed amount, reduced by
// what is written.
type Room struct {
	Left   int64 // octets above the reserve
	Inodes int64 // inodes above the inode reserve, when CountInodes
	// CountInodes is false on a filesystem without an inode count
	// (btrfs) and in a Room made by hand without it.
	CountInodes bool
	Block       int64 // the filesystem's block size: what the smallest file takes
	s           *Spool
}

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

// lock takes the spool's room lock; the returned function releases it.
func (r *Room) lock() (func(), error) {
	if r.s == nil { // a Room made by hand: nothing shared
		return func() {}, nil
	}
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
//   - within the account's quotas; past them, only from an address that
//     holds less than half of them, and up to half again: one address's
//     flood stops at the quota, and never shuts the others out;
//   - within the address's count;
//   - when room is given, above the disk reserves, with neither the
//     account nor the address holding more (octets and inodes) than what is
//     left free above the reserve after the write: one recipient's flood,
//     or one address's flood across any number of recipients, stops at
//     about half of the room there was, and the next notification from
//     another address for another recipient still fits.
func (s *Spool) fits(h holders, n int, room *Room) bool {
	return s.roomFits(n, room) && s.acctFits(h, n, room) && s.addrFits(h.addr, n, room)
}

// roomFits: the notification fits above the reserves at all.
func (s *Spool) roomFits(n int, room *Room) bool {
	return room == nil || room.Left-room.cost(n) >= 0 && !(room.CountInodes && room.Inodes-1 < 0)
}

// acctFits: within the account's quotas, or past them by the grace
// (overQuota), and within its share of the room.
func (s *Spool) acctFits(h holders, n int, room *Room) bool {
	l, a, nb := s.Limits, h.acct, int64(n)
	if l.Count > 0 && a.count+1 > l.Count || l.Bytes > 0 && a.bytes+nb > l.Bytes {
		if !s.overQuota(h, n) {
			return false
		}
	}
	return shareFits(a, n, room)
}

// overQuota: past the account's quotas, a notification from an address
// that holds less than half of them (the pair counter) is kept, up to
// half again of each quota.
func (s *Spool) overQuota(h holders, n int) bool {
	l, a, p, nb := s.Limits, h.acct, h.pair, int64(n)
	if p == nil {
		return false
	}
	return !(l.Count > 0 && (p.count+1 > l.Count/2 || a.count+1 > l.Count+l.Count/2)) &&
		!(l.Bytes > 0 && (p.bytes+nb > l.Bytes/2 || a.bytes+nb > l.Bytes+l.Bytes/2))
}

// addrFits: within the address's count and its share of the room.
func (s *Spool) addrFits(a *counter, n int, room *Room) bool {
	if a == nil {
		return true
	}
	if s.Limits.PerAddr > 0 && a.count+1 > s.Limits.PerAddr {
		return false
	}
	return shareFits(a, n, room)
}

// shareFits: what c counts holds, after the write, no more than what is
// left free above the reserve after it, in octets and in inodes.
func shareFits(c *counter, n int, room *Room) bool {
	if room == nil {
		return true
	}
	cost := room.cost(n)
	used := c.bytes + c.count*room.Block // an upper bound of what the files take
	return used+cost <= room.Left-cost && !(room.CountInodes && c.count+1 > room.Inodes-1)
}
