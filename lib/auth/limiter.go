package auth

import (
	"fmt"
	"hash/fnv"
	"net/netip"
	"path/filepath"
	"time"

	"im2000/lib/session"
)

// Limiter counts recent failures per remote address (IPv6: per /64), and
// within an address per account, so that the counts hold across processes
// (tcpserver starts one per connection). The records live in a fixed table
// of files (buckets): an address's record is in the file its key hashes
// to, with at most maxAddrs addresses per file, so that the directory
// never holds more than buckets files however many addresses fail (one
// file per address let 20,000 /64s make 20,000 files on the spool's
// filesystem). Each file is read and rewritten under an flock, so
// parallel sessions from one address count together. The files are
// advisory: losing one in a crash only forgets a delay.
type Limiter struct {
	Dir       string
	Base, Max time.Duration // the first failure's delay, and the cap
	Window    time.Duration // failures older than this are forgotten; 0: the default Window
}

// The defaults: delays grow from Base, doubling per failure within
// Window, up to Max.
const (
	Base   = 250 * time.Millisecond
	Max    = 8 * time.Second
	Window = 10 * time.Minute
)

// buckets is the number of files; maxAddrs the addresses one file
// remembers (the least recently active is forgotten first: an attacker
// who evicts records by failing from many addresses gains no more than
// those many addresses already give it, a fresh record each); maxAccounts
// the accounts one address's record remembers apart (the failures of
// those it forgets stay in the address's count).
const (
	buckets     = 1024
	maxAddrs    = 64
	maxAccounts = 32
)

// ErrThrottled refuses an attempt unchecked: the address's next answer is
// not due for longer than the longest delay (parallel attempts have run
// ahead). It is temporary (it wraps ErrUnavailable), costs the server
// nothing to answer, and bounds how many sessions wait out a delay at once.
var ErrThrottled = fmt.Errorf("%w: too many failed attempts from this address, try again later", ErrUnavailable)

func (l *Limiter) window() time.Duration {
	if l.Window > 0 {
		return l.Window
	}
	return Window
}

// key names a's record; path is the file it is kept in.
func (l *Limiter) key(a netip.Addr) (path, key string) {
	key = "local" // no remote address: on pipes, run by a local user
	if a.IsValid() {
		key = session.AddrKey(a)
	}
	h := fnv.New32a()
	h.Write([]byte(key))
	return filepath.Join(l.Dir, fmt.Sprintf("b%03x", h.Sum32()%buckets)), key
}

// delay is what the n-th failure within the window waits.
func (l *Limiter) delay(n int) time.Duration {
	d := l.Base
	if d <= 0 {
		return 0
	}
	for i := 1; i < n && d < l.Max; i++ {
		d *= 2
	}
	return min(d, l.Max)
}

// Ready admits an attempt from a to be checked, or refuses it unchecked
// with ErrThrottled when a's next answer is due more than Max from now.
// Refused attempts are not counted (they checked nothing). An admitted
// attempt from an address with failures in the window has its answer's
// time reserved at once, as if it were to fail (from an address without
// any, due is zero and FailAt spaces as Fail does):
// due, one delay after a's previous answer (or now); FailAt then answers
// at due. Reserved before the check, attempts in parallel cannot all pass
// before any is counted: none waits more than about twice Max, so the
// sessions waiting out delays are bounded. When the files cannot be used,
// the attempt goes on, its failure due after Max, and the log says why.
func (l *Limiter) Ready(a netip.Addr) (due time.Time, err error) {
	now := time.Now()
	due = now.Add(l.Max)
	busy := false
	err = l.update(a, now, func(r *record) {
		if r.next > now.Add(l.Max).UnixNano() {
			busy = true
			return
		}
		if r.total() == 0 {
			// Nothing failed lately: no reservation, or a busy address
			// that never fails (a NAT, many sessions) would run its next
			// ahead with every success. Its failures are spaced by Fail.
			due = time.Time{}
			return
		}
		start := now
		if next := time.Unix(0, r.next); next.After(now) {
			start = next
		}
		due = start.Add(l.delay(r.total() + 1))
		r.next = due.UnixNano()
	})
	if busy {
		return time.Time{}, ErrThrottled
	}
	if err != nil {
		logNotReserved(l.Dir, err, l.Max)
		due = now.Add(l.Max)
	}
	return due, nil
}

// FailAt records a failure from a for account of an attempt Ready
// admitted with due, and returns how long to wait before answering it:
// until due. When the failure cannot be recorded, the longest delay.
func (l *Limiter) FailAt(a netip.Addr, account string, due time.Time) time.Duration {
	if due.IsZero() { // not reserved: spaced as any failure
		return l.Fail(a, account)
	}
	now := time.Now()
	err := l.update(a, now, func(r *record) {
		r.count(account, now)
		r.next = max(r.next, due.UnixNano())
	})
	if err != nil {
		logNotRecorded(l.Dir, err, l.Max)
		return l.Max
	}
	l.sweep(now)
	return max(0, due.Sub(now))
}

// Fail records a failure from a for account ("" when the name was not
// even valid) and returns how long to wait before answering it. The delay
// grows with all the failures from a within the window, whatever accounts
// they were for; and the answers to a's failures are spaced by it: each
// is due one delay after the one before it, or after now if that is
// later. So a client that waits for each answer sees the delay, and forty
// in parallel see forty times it: parallel guesses gain nothing. When the
// failure cannot be recorded (the directory full, out of inodes), the
// answer waits the longest delay, Max, and the log says why: a limit that
// stopped counting must not become no limit.
func (l *Limiter) Fail(a netip.Addr, account string) time.Duration {
	now := time.Now()
	var wait time.Duration
	err := l.update(a, now, func(r *record) {
		r.count(account, now)
		start := now
		if next := time.Unix(0, r.next); next.After(now) {
			start = next
		}
		due := start.Add(l.delay(r.total()))
		r.next = due.UnixNano()
		wait = due.Sub(now)
	})
	if err != nil {
		logNotRecorded(l.Dir, err, l.Max)
		return l.Max
	}
	l.sweep(now)
	return wait
}

// Succeed clears account's failures from a, and only those: a success
// with one account must not wipe out what the address tried against the
// others. The spacing of the address's answers stays.
func (l *Limiter) Succeed(a netip.Addr, account string) {
	l.update(a, time.Now(), func(r *record) { delete(r.accounts, account) })
}
