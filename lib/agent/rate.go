package agent

import (
	"errors"
	"fmt"
	"io"
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
	PerMinute int64 // tokens added per minute; zero: no limit
	Burst     int64 // most tokens a bucket holds
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

func (r *Rate) take(a netip.Addr, n int64, now time.Time, all bool) (int64, error) {
	if r.PerMinute <= 0 || n <= 0 {
		return n, nil
	}
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
	tokens, last := r.Burst*1000, now.UnixNano()
	if t, l, ok := parseBucket(string(buf[:m])); ok {
		elapsed := max(now.UnixNano()-l, 0)
		tokens = min(t+elapsedTokens(elapsed, r.PerMinute), r.Burst*1000)
	}
	got := min(n, tokens/1000)
	if all && got < n {
		got = 0
	}
	tokens -= got * 1000
	line := fmt.Sprintf("%d %d\n", tokens, last)
	if _, err := f.WriteAt([]byte(line), 0); err != nil {
		return 0, err
	}
	return got, f.Truncate(int64(len(line)))
}

// elapsedTokens is the refill, in thousandths, for elapsed nanoseconds,
// without overflow for any elapsed time.
func elapsedTokens(elapsed, perMinute int64) int64 {
	const minute = int64(time.Minute)
	whole := elapsed / minute
	if whole > 1<<20 {
		return 1 << 62
	}
	return whole*perMinute*1000 + (elapsed%minute)*perMinute/(minute/1000)
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
	// A bucket refills from empty in Burst/PerMinute minutes.
	full := time.Duration(r.Burst/max(r.PerMinute, 1)+1) * time.Minute
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
