package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"io"
	"net/netip"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// A list identifier's retrievals are counted once per client address (an
// IPv6 address by its /64) per UTC day, and at most MaxListReadsPerDay
// addresses a day: anyone may retrieve a list message, so an unbounded
// counter let one client append an octet per retrieval, forever, and make
// the count say whatever it liked. The count is a statistic for the
// sender (im2000-status), not a capability.
//
// The counter, status/<id>.<lid>.reads, is a fixed header and the hashes
// of the addresses counted today:
//
//	"im2000-reads v1\n"  16 octets
//	total                8 octets, big-endian
//	day                  8 octets, days since 1970-01-01 UTC
//	n                    8 octets, addresses counted that day
//	n hashes             8 octets each
//
// so it never grows past readsHeader + 8*MaxListReadsPerDay octets. It is
// changed under an exclusive flock on itself and not fsynced: a crash may
// forget a count. A file of another form is the older counter (one octet
// per retrieval): its size is its total, and the next count rewrites it.
const MaxListReadsPerDay = 4096

const (
	readsMagic  = "im2000-reads v1\n"
	readsHeader = len(readsMagic) + 24
)

// readsCounter is a parsed counter file.
type readsCounter struct {
	total, day int64
	hashes     []byte // n*8 octets
}

// parseReads reads a counter file's contents; anything not in the current
// form is an older counter whose size is its total.
func parseReads(b []byte) readsCounter {
	if len(b) < readsHeader || !bytes.HasPrefix(b, []byte(readsMagic)) {
		return readsCounter{total: int64(len(b)), day: -1}
	}
	h := b[len(readsMagic):]
	// Both fit in 63 bits in any file this code wrote; a damaged one
	// counts from 0 rather than below it.
	c := readsCounter{total: int64(binary.BigEndian.Uint64(h) & (1<<63 - 1)),
		day: int64(binary.BigEndian.Uint64(h[8:]) & (1<<63 - 1))}
	n := binary.BigEndian.Uint64(h[16:])
	if rest := uint64(len(b)-readsHeader) / 8; n > rest || n > MaxListReadsPerDay {
		n = min(rest, MaxListReadsPerDay)
	}
	c.hashes = b[readsHeader : readsHeader+int(n)*8]
	return c
}

func (c *readsCounter) marshal() []byte {
	b := make([]byte, 0, readsHeader+len(c.hashes))
	b = append(b, readsMagic...)
	b = binary.BigEndian.AppendUint64(b, uint64(c.total))
	b = binary.BigEndian.AppendUint64(b, uint64(c.day))
	b = binary.BigEndian.AppendUint64(b, uint64(len(c.hashes)/8))
	return append(b, c.hashes...)
}

// count adds a retrieval by the address whose hash is h on day, and
// reports whether it counted.
func (c *readsCounter) count(h []byte, day int64) bool {
	if c.day != day {
		c.day, c.hashes = day, nil
	}
	for i := 0; i+8 <= len(c.hashes); i += 8 {
		if bytes.Equal(c.hashes[i:i+8], h) {
			return false
		}
	}
	if len(c.hashes)/8 >= MaxListReadsPerDay {
		return false
	}
	c.hashes = append(c.hashes[:len(c.hashes):len(c.hashes)], h...)
	if c.total < 1<<62 {
		c.total++
	}
	return true
}

// readerHash is the 8-octet hash of a client address, an IPv6 address by
// its /64.
func readerHash(a netip.Addr) []byte {
	a = a.Unmap()
	var key []byte
	if a.Is4() {
		b := a.As4()
		key = append([]byte{4}, b[:]...)
	} else {
		b := a.As16()
		key = append([]byte{6}, b[:8]...)
	}
	sum := sha256.Sum256(key)
	return sum[:8]
}

// readTotal is the count a counter file holds; a missing one is 0.
func readTotal(path string) int64 {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	b := make([]byte, readsHeader)
	n, _ := io.ReadFull(f, b)
	if n == readsHeader && bytes.HasPrefix(b, []byte(readsMagic)) {
		return parseReads(b).total
	}
	if fi, err := f.Stat(); err == nil {
		return fi.Size() // the older counter
	}
	return 0
}

// CountRead counts a retrieval of the message under its list identifier
// number i by a client at from, once per address per day (see
// MaxListReadsPerDay). A failure (a full disk) loses the count only; the
// caller serves the message all the same.
func (m *Message) CountRead(i int, from netip.Addr, now time.Time) error {
	a := &Account{Name: m.Account, dir: m.dir}
	f, err := os.OpenFile(a.readsPath(m.Env.ID, m.Env.Lists[i].ID), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return err
	}
	b, err := io.ReadAll(io.LimitReader(f, int64(readsHeader+8*MaxListReadsPerDay)))
	if err != nil {
		return err
	}
	c := parseReads(b)
	legacy := c.day < 0
	if legacy {
		// The older counter's total is its whole size, which the read
		// above stops short of: fstat, as readTotal does.
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		c.total = fi.Size()
	}
	day := now.Unix() / 86400
	if !c.count(readerHash(from), day) && !legacy {
		return nil
	}
	out := c.marshal()
	if _, err := f.WriteAt(out, 0); err != nil {
		return err
	}
	return f.Truncate(int64(len(out)))
}
