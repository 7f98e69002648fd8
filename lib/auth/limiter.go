package auth

import (
	"bufio"
	"bytes"
	"fmt"
	"hash/fnv"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"im2000/lib/session"
	"im2000/lib/store"
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

// maxRecord bounds what is read of a file: maxAddrs records of up to
// maxAccounts+2 lines of at most about 110 octets.
const maxRecord = 256 << 10

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

type count struct {
	n    int
	last int64 // Unix seconds of the latest failure
}

// record is one address's file: the failures per account, those with no
// valid account name ("other"), and when the next failure's answer may be
// given at the earliest (Unix nanoseconds).
type record struct {
	next     int64
	other    count
	accounts map[string]count
}

func (r *record) total() int {
	n := r.other.n
	for _, c := range r.accounts {
		n += c.n
	}
	return n
}

func (r *record) expire(now time.Time, window time.Duration) {
	old := now.Add(-window).Unix()
	if r.other.last < old {
		r.other = count{}
	}
	for a, c := range r.accounts {
		if c.last < old {
			delete(r.accounts, a)
		}
	}
}

// trim keeps the maxAccounts accounts failed most recently apart; the
// others' failures go to other, so that the address's count loses nothing.
func (r *record) trim() {
	if len(r.accounts) <= maxAccounts {
		return
	}
	names := make([]string, 0, len(r.accounts))
	for a := range r.accounts {
		names = append(names, a)
	}
	sort.Slice(names, func(i, j int) bool { return r.accounts[names[i]].last > r.accounts[names[j]].last })
	for _, a := range names[maxAccounts:] {
		c := r.accounts[a]
		r.other = count{r.other.n + c.n, max(r.other.last, c.last)}
		delete(r.accounts, a)
	}
}

// count adds a failure for account ("" or an invalid name: other).
func (r *record) count(account string, now time.Time) {
	if account == "" || store.CheckAccount(account) != nil {
		r.other = count{r.other.n + 1, now.Unix()}
	} else {
		c := r.accounts[account]
		r.accounts[account] = count{c.n + 1, now.Unix()}
	}
	r.trim()
}

// active is when the record last changed (Unix nanoseconds), to tell
// which addresses a full bucket forgets first.
func (r *record) active() int64 {
	t := max(r.next, r.other.last*int64(time.Second))
	for _, c := range r.accounts {
		t = max(t, c.last*int64(time.Second))
	}
	return t
}

func (r *record) empty(now time.Time) bool {
	return r.total() == 0 && r.next <= now.UnixNano()
}

// encode writes the record as lines: "next NANOS", "other N LAST", and
// "account NAME N LAST" for each account.
func (r *record) encode() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "next %d\nother %d %d\n", r.next, r.other.n, r.other.last)
	names := make([]string, 0, len(r.accounts))
	for a := range r.accounts {
		names = append(names, a)
	}
	sort.Strings(names)
	for _, a := range names {
		fmt.Fprintf(&b, "account %s %d %d\n", a, r.accounts[a].n, r.accounts[a].last)
	}
	return b.Bytes()
}

// parseRecord reads what encode wrote. Anything else (a line it does not
// know, a count out of range, a file of the older format) is skipped: the
// file only ever costs a forgotten delay.
func parseRecord(b []byte) *record {
	r := &record{accounts: map[string]count{}}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 4096), 4096)
	num := func(s string) (int64, bool) {
		n, err := strconv.ParseInt(s, 10, 64)
		return n, err == nil && n >= 0
	}
	cnt := func(n, last string) (count, bool) {
		c, ok1 := num(n)
		t, ok2 := num(last)
		return count{int(min(c, 1<<20)), t}, ok1 && ok2
	}
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 2 && f[0] == "next":
			if n, ok := num(f[1]); ok {
				r.next = n
			}
		case len(f) == 3 && f[0] == "other":
			if c, ok := cnt(f[1], f[2]); ok {
				r.other = c
			}
		case len(f) == 4 && f[0] == "account" && store.CheckAccount(f[1]) == nil && len(r.accounts) < maxAccounts:
			if c, ok := cnt(f[2], f[3]); ok {
				r.accounts[f[1]] = c
			}
		}
	}
	return r
}
