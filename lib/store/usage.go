package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
)

// The quota's counter (issue 17: each commit stat'ed every message of the
// account). <account>/usage holds the octets of the account's committed
// message files:
//
//	"im2000-usage v1\n"  16 octets
//	total                8 octets, big-endian
//	pending              8 octets, big-endian, signed
//	crc                  4 octets, CRC-32C of the 32 before
//
// It is read and changed under an exclusive flock on itself, and every
// change to msg/ that adds or removes octets (a commit's rename, a cancel's
// or a reaping's unlink) happens under that lock, in three steps: write
// total and the change as pending, fsync; change msg/ and fsync it; write
// total+change with nothing pending, fsync. So a counter with something
// pending, or one that is missing or damaged, may or may not include the
// change a crash interrupted: it is rebuilt by walking msg/, under the
// lock, once, and O(1) again from then on. Rewritten in place: 36 octets,
// within one disk sector, and the checksum catches a torn one all the same.

const usageMagic = "im2000-usage v1\n"

const usageLen = len(usageMagic) + 20

// usageLock is the open, locked counter of an account.
type usageLock struct {
	a *Account
	f *os.File
}

func (a *Account) lockUsage() (*usageLock, error) {
	f, err := os.OpenFile(filepath.Join(a.dir, "usage"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := flock(f); err != nil {
		f.Close()
		return nil, err
	}
	return &usageLock{a, f}, nil
}

func (u *usageLock) unlock() { u.f.Close() }

func marshalUsage(total, pending int64) []byte {
	b := make([]byte, 0, usageLen)
	b = append(b, usageMagic...)
	b = binary.BigEndian.AppendUint64(b, uint64(total))
	b = binary.BigEndian.AppendUint64(b, uint64(pending))
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// parseUsage returns the total of a counter with nothing pending.
func parseUsage(b []byte) (int64, bool) {
	if len(b) != usageLen || !bytes.HasPrefix(b, []byte(usageMagic)) {
		return 0, false
	}
	if crc32.Checksum(b[:usageLen-4], castagnoli) != binary.BigEndian.Uint32(b[usageLen-4:]) {
		return 0, false
	}
	total := int64(binary.BigEndian.Uint64(b[len(usageMagic):]))
	pending := int64(binary.BigEndian.Uint64(b[len(usageMagic)+8:]))
	return total, pending == 0 && total >= 0
}

func (u *usageLock) write(total, pending int64) error {
	if _, err := u.f.WriteAt(marshalUsage(total, pending), 0); err != nil {
		return err
	}
	if err := u.f.Truncate(int64(usageLen)); err != nil {
		return err
	}
	return u.f.Sync()
}

// total reads the counter, rebuilding it if it cannot be trusted.
func (u *usageLock) total() (int64, error) {
	b := make([]byte, usageLen+1)
	n, _ := u.f.ReadAt(b, 0)
	if total, ok := parseUsage(b[:n]); ok {
		return total, nil
	}
	total, err := u.a.walkUsage()
	if err != nil {
		return 0, err
	}
	return total, u.write(total, 0)
}

// change runs do, which adds delta octets to msg/ (negative: removes), as
// the three steps above. If do fails the counter stays pending, to be
// rebuilt by the next reader: do may have changed msg/ before it failed.
func (u *usageLock) change(delta int64, do func() error) error {
	total, err := u.total()
	if err != nil {
		return err
	}
	if err := u.write(total, delta); err != nil {
		return err
	}
	if err := do(); err != nil {
		return err
	}
	if total+delta < 0 {
		// The counter was wrong: leave it pending, so that the next
		// reader rebuilds it, rather than hide the drift at zero.
		return nil
	}
	return u.write(total+delta, 0)
}

// Usage is the octets the account's committed message files take, from the
// counter: O(1) unless a crash left it to be rebuilt.
func (a *Account) Usage() (int64, error) {
	u, err := a.lockUsage()
	if err != nil {
		return 0, err
	}
	defer u.unlock()
	return u.total()
}

// RebuildUsage recounts the account's usage by walking msg/, as after a
// crash: for im2000-notifyd's hourly clean, which so bounds how long any
// drift from a bug could last.
func (a *Account) RebuildUsage() error {
	u, err := a.lockUsage()
	if err != nil {
		return err
	}
	defer u.unlock()
	total, err := a.walkUsage()
	if err != nil {
		return err
	}
	b := make([]byte, usageLen)
	if n, _ := u.f.ReadAt(b, 0); n == usageLen && bytes.Equal(b, marshalUsage(total, 0)) {
		return nil // right already: no write
	}
	return u.write(total, 0)
}

// walkUsage sums the sizes of the files in msg/.
func (a *Account) walkUsage() (int64, error) {
	ents, err := os.ReadDir(filepath.Join(a.dir, "msg"))
	if err != nil {
		return 0, err
	}
	var n int64
	for _, e := range ents {
		fi, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed meanwhile
		}
		if err != nil {
			return 0, err
		}
		n += fi.Size()
	}
	return n, nil
}

// peekUsage reads the counter without its lock, for a quick refusal; not
// ok when it cannot be trusted as it stands.
func (a *Account) peekUsage() (int64, bool) {
	f, err := os.Open(filepath.Join(a.dir, "usage"))
	if err != nil {
		return 0, false
	}
	defer f.Close()
	b := make([]byte, usageLen+1)
	n, _ := f.ReadAt(b, 0)
	return parseUsage(b[:n])
}
