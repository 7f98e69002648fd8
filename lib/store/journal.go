package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"

	"im2000/lib/durable"
	"im2000/lib/msgid"
)

// A message's status is a snapshot and a journal (issue 17: a status event
// for one recipient writes a few dozen octets, whatever the recipient
// count; rewriting the whole sidecar made 10,000 silences write gigabytes).
//
//	status/<id>              the snapshot: the text form of Status, with a
//	                         "journal <gen>" line once it has been compacted
//	status/<id>.<gen>.journal the changes since that snapshot, appended
//
// Every change appends, under the message file's flock, one record per
// recipient it changed, each the recipient's whole new state, in one
// write(2), then fsyncs. Folding the journal over the snapshot, last record
// per recipient wins, gives the status. A record is framed
//
//	length  2 octets, big-endian, of the body
//	crc     4 octets, big-endian, CRC-32C of the body
//	body    'r', uvarint index, notification, read, pinned (1 octet each),
//	        uvarint attempts, varint last, varint next (Unix seconds)
//
// so a record torn by a crash (short, or its checksum wrong) ends the
// journal for readers, and the next writer truncates it away before it
// appends. Unknown record kinds are skipped by their length: a later
// version may add some.
//
// When the journal has grown past twice the larger of the snapshot and
// snapLine octets a recipient (a snapshot of derived ids is one line,
// however many recipients: status.go), and past compactMin, the writer
// folds it into a new snapshot with the next generation, renames that into
// place, and only then removes the old journal. (The event that made every
// recipient final compacted too, for readers to read one file; it rewrote
// the whole snapshot, ~70 octets a recipient, more than all the
// recipients' silences appended: issue 17.) A lock-free reader that read
// the old snapshot either opens the
// old journal (complete: nobody appends to an old generation) or finds it
// gone and reads the snapshot again. The compaction's cost, spread over
// the appends that made it necessary, is at most one and a half times
// theirs: still O(1) per event.

const (
	journalHeader = 6   // length and crc
	maxRecord     = 128 // a body is 44 octets at most; anything longer is damage
)

// compactMin is the journal length below which it is never compacted. A
// variable for the tests, which make compaction race everything else.
var compactMin int64 = 64 << 10

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// journalPath is the journal of generation gen of message id.
func (a *Account) journalPath(id msgid.ID, gen uint64) string {
	return a.path("status", id) + "." + strconv.FormatUint(gen, 10) + ".journal"
}

// appendRecord appends the framed record of recipient i's state r to b.
func appendRecord(b []byte, i int, r *RecipientStatus) []byte {
	var body [maxRecord]byte
	n := copy(body[:], "r")
	n += binary.PutUvarint(body[n:], uint64(i))
	pin := byte(0)
	if r.Pinned {
		pin = 1
	}
	body[n], body[n+1], body[n+2] = byte(r.Notification), byte(r.Read), pin
	n += 3
	// Clamped to what parseRecord accepts: a record it refused would end
	// the journal for readers, hiding every later one.
	n += binary.PutUvarint(body[n:], uint64(min(max(r.Attempts, 0), 1<<62)))
	n += binary.PutVarint(body[n:], max(unixTime(r.Last), 0))
	n += binary.PutVarint(body[n:], max(unixTime(r.Next), 0))
	b = binary.BigEndian.AppendUint16(b, uint16(n))
	b = binary.BigEndian.AppendUint32(b, crc32.Checksum(body[:n], castagnoli))
	return append(b, body[:n]...)
}

// journalRecord is one recipient record read back.
type journalRecord struct {
	index int
	state RecipientStatus // without ID
}

// parseJournal reads records from b up to the first damaged one, and
// returns them and the length of the undamaged prefix.
func parseJournal(b []byte) ([]journalRecord, int) {
	var out []journalRecord
	off := 0
	for len(b)-off >= journalHeader {
		n := int(binary.BigEndian.Uint16(b[off:]))
		if n == 0 || n > maxRecord || len(b)-off-journalHeader < n {
			break
		}
		body := b[off+journalHeader : off+journalHeader+n]
		if crc32.Checksum(body, castagnoli) != binary.BigEndian.Uint32(b[off+2:]) {
			break
		}
		if body[0] == 'r' {
			r, ok := parseRecord(body[1:])
			if !ok {
				break // checksummed but meaningless: damage all the same
			}
			out = append(out, r)
		}
		off += journalHeader + n
	}
	return out, off
}

func parseRecord(b []byte) (journalRecord, bool) {
	var r journalRecord
	i, n := binary.Uvarint(b)
	if n <= 0 || i > 1<<24 || len(b) < n+3 {
		return r, false
	}
	b = b[n:]
	if int(b[0]) >= len(notificationNames) || int(b[1]) >= len(readNames) || b[2] > 1 {
		return r, false
	}
	r.index = int(i)
	r.state.Notification, r.state.Read, r.state.Pinned = Notification(b[0]), Read(b[1]), b[2] == 1
	b = b[3:]
	att, n := binary.Uvarint(b)
	if n <= 0 || att > 1<<62 {
		return r, false
	}
	b = b[n:]
	last, n := binary.Varint(b)
	if n <= 0 || last < 0 {
		return r, false
	}
	b = b[n:]
	next, n := binary.Varint(b)
	if n <= 0 || next < 0 || n != len(b) {
		return r, false
	}
	r.state.Attempts, r.state.Last, r.state.Next = int64(att), fromUnix(last), fromUnix(next)
	return r, true
}

// fold applies journal records to a status; a record for a recipient the
// status does not have is damage and is ignored.
func (s *Status) fold(recs []journalRecord) {
	for _, r := range recs {
		if r.index < len(s.Recipients) {
			id := s.Recipients[r.index].ID
			s.Recipients[r.index] = r.state
			s.Recipients[r.index].ID = id
		}
	}
}

// sidecar is a message's status as read from disk.
type sidecar struct {
	st       *Status
	snapSize int   // octets of the snapshot
	valid    int64 // octets of the journal up to its first damaged record
	size     int64 // octets of the journal file
}

// loadStatus reads a message's snapshot and journal and folds them. It
// takes no lock: see the compaction above for why a reader never misses a
// journal.
func (a *Account) loadStatus(id msgid.ID) (*sidecar, error) {
	for try := 0; ; try++ {
		snap, err := os.ReadFile(a.path("status", id))
		if errors.Is(err, fs.ErrNotExist) {
			return nil, ErrNoSuch
		}
		if err != nil {
			return nil, err
		}
		st, err := ParseStatus(snap)
		if err != nil {
			return nil, err
		}
		j, err := os.ReadFile(a.journalPath(id, st.gen))
		if errors.Is(err, fs.ErrNotExist) {
			// Never made, or removed by a compaction since the snapshot
			// was read: then the snapshot has a new generation.
			again, err := os.ReadFile(a.path("status", id))
			if err != nil {
				continue // removed (cancelled): the next read says so
			}
			if st2, err := ParseStatus(again); err == nil && st2.gen != st.gen {
				if try >= 100 {
					return nil, fmt.Errorf("status of %s: compacted 100 times while being read", id)
				}
				continue
			}
		} else if err != nil {
			return nil, err
		}
		if err := a.deriveIDs(id, st); err != nil {
			return nil, err
		}
		recs, valid := parseJournal(j)
		st.fold(recs)
		// A snapshot of "rcpts" lines is short; the journal is compacted
		// against what its recipients' lines would take, so that a
		// message's first events do not rewrite it (record).
		size := max(len(snap), snapLine*len(st.Recipients))
		return &sidecar{st: st, snapSize: size, valid: int64(valid), size: int64(len(j))}, nil
	}
}

// record makes the changes from old to st: a record per changed
// recipient appended to the journal, or, once the journal is long, a new
// snapshot. The caller holds the message's lock, and calls the returned
// sync (when not nil) after releasing it: the fsync of an append need not
// hold off the next updater, and concurrent updaters' fsyncs then share the
// filesystem's journal commits. The update is durable when sync returns;
// until then a lock-free reader may already see it.
func (a *Account) record(id msgid.ID, sc *sidecar, old []RecipientStatus) (sync func() error, err error) {
	var recs []byte
	for i := range sc.st.Recipients {
		if sc.st.Recipients[i] != old[i] {
			recs = appendRecord(recs, i, &sc.st.Recipients[i])
		}
	}
	if len(recs) == 0 {
		return nil, nil
	}
	grown := sc.valid + int64(len(recs))
	if grown > compactMin && grown > 2*int64(sc.snapSize) {
		return nil, a.compact(id, sc.st)
	}
	path := a.journalPath(id, sc.st.gen)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	if sc.size > sc.valid {
		// A torn record from a crash: cut it off, or what follows it
		// would be invisible to readers.
		if err := f.Truncate(sc.valid); err != nil {
			f.Close()
			return nil, err
		}
	}
	if _, err := f.Write(recs); err != nil {
		f.Truncate(sc.valid) // a short write must not stand for a record
		f.Close()
		return nil, err
	}
	return func() error {
		defer f.Close()
		if err := f.Sync(); err != nil {
			return err
		}
		if sc.size == 0 {
			// Perhaps a new file: its name must be durable too.
			return durable.SyncDir(filepath.Join(a.dir, "status"))
		}
		return nil
	}, nil
}

// compact writes st as the next generation's snapshot and removes the
// journal it replaces.
func (a *Account) compact(id msgid.ID, st *Status) error {
	old := st.gen
	st.gen++
	snap := a.marshalStatus(id, st)
	if err := durable.WriteFile(a.path("status", id), snap, 0o600, filepath.Join(a.dir, "tmp")); err != nil {
		st.gen = old
		return err
	}
	os.Remove(a.journalPath(id, old)) // if this is lost, Clean finds it
	return nil
}

// Compact folds a message's journal into its snapshot now, whatever its
// length: for a message whose status will change little more.
func (a *Account) Compact(id msgid.ID) error {
	m, err := a.Open(id)
	if err != nil {
		return err
	}
	defer m.Close()
	if err := flock(m.f); err != nil {
		return err
	}
	sc, err := a.loadStatus(id)
	if err != nil {
		return err
	}
	if sc.size == 0 {
		return nil
	}
	return a.compact(id, sc.st)
}

// staleJournal reports whether path is a journal that a compaction has
// replaced (its generation is below the snapshot's).
func (a *Account) staleJournal(id msgid.ID, gen uint64) bool {
	b, err := os.ReadFile(a.path("status", id))
	if err != nil {
		return false
	}
	st, err := ParseStatus(b)
	return err == nil && gen < st.gen
}

// snapLine is about what a recipient's line in a snapshot takes.
const snapLine = 40

// deriveIDs fills in the ids of the recipients a snapshot's "rcpts" lines
// gave (status.go).
func (a *Account) deriveIDs(id msgid.ID, st *Status) error {
	if len(st.derive) == 0 {
		return nil
	}
	if a.s == nil {
		return errors.New("store: a status with derived recipient ids read without the store's key")
	}
	for _, run := range st.derive {
		for i := run[0]; i < run[0]+run[1]; i++ {
			st.Recipients[i].ID = a.s.recipientID(id, i)
		}
	}
	st.derive = nil
	return nil
}

// marshalStatus is the snapshot of message id's status, each run of
// recipients in the same state with derived ids as one line.
func (a *Account) marshalStatus(id msgid.ID, st *Status) []byte {
	if a.s == nil {
		return st.Marshal()
	}
	return st.marshal(func(i int) msgid.ID { return a.s.recipientID(id, i) })
}

// removeStatus removes a message's snapshot, journals and hand-off record.
func (a *Account) removeStatus(id msgid.ID) {
	os.Remove(a.path("status", id))
	os.Remove(a.handOffPath(id)) // handoff.go
	journals, _ := filepath.Glob(a.path("status", id) + ".*.journal")
	for _, j := range journals {
		os.Remove(j)
	}
}
