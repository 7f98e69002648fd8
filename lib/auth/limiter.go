package auth

import (
	"bufio"
	"bytes"
	"fmt"
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
// within an address per account, in one file per address, so that the
// counts hold across processes (tcpserver starts one per connection). Each
// file is read and rewritten under an flock, so parallel sessions from one
// address count together. The files are advisory: losing one in a crash
// only forgets a delay.
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

// maxAccounts bounds the accounts one address's file remembers apart; the
// failures of those it forgets stay in the address's count.
const maxAccounts = 256

// maxRecord bounds what is read of a file.
const maxRecord = 64 << 10

func (l *Limiter) window() time.Duration {
	if l.Window > 0 {
		return l.Window
	}
	return Window
}

func (l *Limiter) path(a netip.Addr) string {
	key := "local" // no remote address: on pipes, run by a local user
	if a.IsValid() {
		key = session.AddrKey(a)
	}
	return filepath.Join(l.Dir, key)
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

// Fail records a failure from a for account ("" when the name was not
// even valid) and returns how long to wait before answering it. The delay
// grows with all the failures from a within the window, whatever accounts
// they were for; and the answers to a's failures are spaced by it: each
// is due one delay after the one before it, or after now if that is
// later. So a client that waits for each answer sees the delay, and forty
// in parallel see forty times it: parallel guesses gain nothing.
func (l *Limiter) Fail(a netip.Addr, account string) time.Duration {
	now := time.Now()
	var wait time.Duration
	err := l.update(a, now, func(r *record) {
		if account == "" || store.CheckAccount(account) != nil {
			r.other = count{r.other.n + 1, now.Unix()}
		} else {
			c := r.accounts[account]
			r.accounts[account] = count{c.n + 1, now.Unix()}
		}
		r.trim()
		start := now
		if next := time.Unix(0, r.next); next.After(now) {
			start = next
		}
		due := start.Add(l.delay(r.total()))
		r.next = due.UnixNano()
		wait = due.Sub(now)
	})
	if err != nil {
		return l.delay(1) // cannot count: at least the first delay
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

// update reads a's record under its lock, lets change modify it, and
// writes it back (or removes the file when nothing is left to remember).
func (l *Limiter) update(a netip.Addr, now time.Time, change func(*record)) error {
	path := l.path(a)
	f, err := session.LockFile(path, true)
	if err != nil {
		return err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxRecord))
	if err != nil {
		return err
	}
	r := parseRecord(b)
	r.expire(now, l.window())
	change(r)
	if r.empty(now) {
		// Removed while locked: LockFile in another process notices.
		return os.Remove(path)
	}
	if err := f.Truncate(0); err != nil {
		return err
	}
	_, err = f.WriteAt(r.encode(), 0)
	return err
}

// sweep removes the files of addresses with nothing left to remember, at
// most once a minute per directory, so that the directory holds only the
// addresses that failed within the window.
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
