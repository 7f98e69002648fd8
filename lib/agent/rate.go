package agent

import (
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"im2000/lib/session"
)

// Rate limits the notifications one submitting address may hand the agent:
// a token bucket per address (session.AddrKey: an IPv6 address by its
// /64, which one host usually has whole), refilled at PerMinute and
// holding at most Burst. Under tcpserver each session is its own process, so a bucket is a small file,
// <dir>/<key>, read and rewritten under an exclusive flock: every process
// draws on the same bucket, and a client gains nothing by opening more
// connections. A bucket left alone long enough to be full again is the same
// as no file, so Take removes such files now and then (see sweep): the
// directory holds only addresses heard from lately.
type Rate struct {
	Dir       string
	PerMinute int64 // tokens added per minute; zero (and no Refill): no limit
	Burst     int64 // most tokens a bucket holds
	// Refill, when set, replaces PerMinute: the bucket refills Burst
	// tokens over Refill, exactly (im2000-gatewayd's share: a quota's
	// share per message lifetime, under one octet a minute for a small
	// quota, where a whole-token PerMinute floor of 1 refilled a 20000
	// share 63200 in one lifetime: third hostile review of issue 20).
	Refill time.Duration
}

// limited says whether the rate limits at all.
func (r *Rate) limited() bool { return r.PerMinute > 0 || r.Refill > 0 }

// refill is the refill, in thousandths, for elapsed nanoseconds, at most
// limit: elapsed*Burst/Refill, or elapsed*PerMinute a minute, computed
// wide so that no elapsed time or rate overflows.
func (r *Rate) refill(elapsed, limit int64) int64 {
	num, per := r.PerMinute, int64(time.Minute)
	if r.Refill > 0 {
		num, per = r.Burst, int64(r.Refill)
	}
	if elapsed <= 0 || num <= 0 || limit <= 0 {
		return 0
	}
	v := new(big.Int).Mul(big.NewInt(elapsed), big.NewInt(num))
	v.Mul(v, big.NewInt(1000))
	v.Quo(v, big.NewInt(per))
	if !v.IsInt64() || v.Int64() > limit {
		return limit
	}
	return v.Int64()
}

// fullAfter is how long an empty bucket takes to refill.
func (r *Rate) fullAfter() time.Duration {
	if r.Refill > 0 {
		return r.Refill + time.Minute
	}
	return time.Duration(r.Burst/max(r.PerMinute, 1)+1) * time.Minute
}

// sweepEvery is how often, at most, the bucket directory is swept.
const sweepEvery = 10 * time.Minute

// Take asks for n tokens for address a at now and returns how many it got
// (0 to n): the first that many notifications may be kept, the rest are
// answered full.
func (r *Rate) Take(a netip.Addr, n int64, now time.Time) (int64, error) {
	return r.take(a, n, now, false)
}

// TakeAll takes n tokens for address a at now, or none when the bucket
// holds fewer: for a caller that cannot use part of what it asks for
// (im2000-gatewayd: a message's octets), so that a refusal spends nothing.
func (r *Rate) TakeAll(a netip.Addr, n int64, now time.Time) (bool, error) {
	got, err := r.take(a, n, now, true)
	return err == nil && got == n, err
}

// Give returns n tokens to address a's bucket, at most up to Burst: for a
// caller whose charge bought nothing (im2000-gatewayd: a message the store
// refused at commit). The caller gives back one charge at most once.
func (r *Rate) Give(a netip.Addr, n int64, now time.Time) error {
	if !r.limited() || n <= 0 {
		return nil
	}
	_, err := r.update(a, now, func(tokens int64) (int64, int64) {
		return min(tokens+min(n, r.Burst)*1000, r.Burst*1000), 0
	})
	return err
}

func (r *Rate) take(a netip.Addr, n int64, now time.Time, all bool) (int64, error) {
	if !r.limited() || n <= 0 {
		return n, nil
	}
	return r.update(a, now, func(tokens int64) (int64, int64) {
		got := min(n, tokens/1000)
		if all && got < n {
			got = 0
		}
		return tokens - got*1000, got
	})
}

// update refills address a's bucket to now and rewrites it with what
// change makes of its tokens (in thousandths), under the bucket's lock.
// The time written is never older than the bucket's: a process that read
// its clock before waiting for the lock must not set the bucket back, or
// the next take is refilled the same minutes again (twice an hour's
// share in one hour: third hostile review of issue 20).
func (r *Rate) update(a netip.Addr, now time.Time, change func(tokens int64) (int64, int64)) (int64, error) {
	if err := os.MkdirAll(r.Dir, 0o700); err != nil {
		return 0, err
	}
	r.maybeSweep(now)
	path := filepath.Join(r.Dir, session.AddrKey(a))
	f, err := lockLive(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var buf [64]byte
	m, err := f.ReadAt(buf[:], 0)
	if err != nil && err != io.EOF {
		return 0, err
	}
	// Tokens are kept in thousandths, so that a slow rate still refills
	// between close calls.
	full := r.Burst * 1000
	tokens, last := full, now.UnixNano()
	if t, l, ok := parseBucket(string(buf[:m])); ok {
		t = min(t, full)
		tokens = t + r.refill(last-l, full-t)
		last = max(last, l)
	}
	tokens, got := change(tokens)
	line := fmt.Sprintf("%d %d\n", tokens, last)
	if _, err := f.WriteAt([]byte(line), 0); err != nil {
		return 0, err
	}
	return got, f.Truncate(int64(len(line)))
}

func parseBucket(s string) (tokens, last int64, ok bool) {
	line, ok := strings.CutSuffix(s, "\n")
	a, b, ok2 := strings.Cut(line, " ")
	if !ok || !ok2 {
		return 0, 0, false
	}
	t, err1 := strconv.ParseInt(a, 10, 64)
	l, err2 := strconv.ParseInt(b, 10, 64)
	return t, l, err1 == nil && err2 == nil && t >= 0
}

// lockLive opens and locks a bucket file that is still in its directory: a
// sweep may have removed it between the open and the lock, and an update
// to a removed file would be lost.
func lockLive(path string) (*os.File, error) {
	for range 10 {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, err
		}
		if err := flockEx(f, false); err != nil {
			f.Close()
			return nil, err
		}
		var st unix.Stat_t
		if err := unix.Fstat(int(f.Fd()), &st); err != nil {
			f.Close()
			return nil, err
		}
		if st.Nlink > 0 {
			return f, nil
		}
		f.Close()
	}
	return nil, errors.New("bucket file keeps vanishing")
}

func flockEx(f *os.File, nonblock bool) error {
	how := unix.LOCK_EX
	if nonblock {
		how |= unix.LOCK_NB
	}
	for {
		err := unix.Flock(int(f.Fd()), how)
		if err != unix.EINTR {
			return err
		}
	}
}

// maybeSweep removes buckets that have been full again for a while, at most
// every sweepEvery (the time of the last sweep is the mtime of .swept).
// Each removal takes the bucket's lock first, so a bucket in use is kept.
func (r *Rate) maybeSweep(now time.Time) {
	stamp := filepath.Join(r.Dir, ".swept")
	if fi, err := os.Stat(stamp); err == nil && now.Sub(fi.ModTime()) < sweepEvery {
		return
	}
	if err := os.WriteFile(stamp, nil, 0o600); err != nil {
		return
	}
	os.Chtimes(stamp, now, now)
	full := r.fullAfter()
	d, err := os.Open(r.Dir)
	if err != nil {
		return
	}
	defer d.Close()
	for {
		ents, err := d.ReadDir(1024)
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), ".") {
				continue
			}
			r.sweepOne(filepath.Join(r.Dir, e.Name()), now, full)
		}
		if err != nil || len(ents) == 0 {
			return
		}
	}
}

func (r *Rate) sweepOne(path string, now time.Time, full time.Duration) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return
	}
	defer f.Close()
	if flockEx(f, true) != nil {
		return // in use
	}
	var buf [64]byte
	m, _ := f.ReadAt(buf[:], 0)
	_, last, ok := parseBucket(string(buf[:m]))
	if !ok || now.Sub(time.Unix(0, last)) > full {
		os.Remove(path)
	}
}
