// One address's record in a bucket file: its failures per account, when
// they expire, and its lines in the file.

package auth

import (
	"bufio"
	"bytes"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"im2000/lib/store"
)

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
