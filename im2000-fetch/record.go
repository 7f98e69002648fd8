package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"im2000/lib/agent"
	"im2000/lib/durable"
	"im2000/lib/fail"
)

// One run at a time per Maildir, and the record of what it delivered.
//
// Two runs at once would both take the same pending notification and
// deliver it twice: a run holds an exclusive flock on MAILDIR/.im2000/lock
// from before it takes notifications until it exits (the kernel lets go of
// it whatever way the process ends). A second run does not wait: it exits
// 111 at once, saying so (im2000-fetch(1), FILES).
//
// The delivered record (MAILDIR/.im2000/delivered, a line "KEY UNIXTIME"
// for each message delivered) makes a second notification of a message
// already delivered a silence only: one re-sent before the silence got
// through may reach the agent after it, even runs later. It is read once
// a run, under the lock, and kept in memory; each delivery appends its
// line durably; at the end of the run the lines older than maxlifetime
// (no store re-sends a message it no longer keeps) whose notifications
// are no longer pending are dropped, so the record does not grow with
// every message ever fetched. A line without a time (an older record)
// counts as written now.

// errLocked is a Maildir another run is fetching into.
var errLocked = errors.New("another im2000-fetch is running for this Maildir")

// lock takes the run's lock, or fails with a temporary error naming it.
func (f *fetcher) lock() error {
	dir := filepath.Join(f.maildir, ".im2000")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fail.Temp(err)
	}
	path := filepath.Join(dir, "lock")
	fh, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fail.Temp(err)
	}
	if err := syscall.Flock(int(fh.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		fh.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return fail.Temp(fmt.Errorf("%w (%s is locked); this one stops, nothing done: run again once it has finished", errLocked, path))
		}
		return fail.Temp(fmt.Errorf("locking %s: %w", path, err))
	}
	f.lockFile = fh // held, open, until the process exits
	return nil
}

func (f *fetcher) recordPath() string { return filepath.Join(f.maildir, ".im2000", "delivered") }

// readRecord reads the delivered record into memory.
func (f *fetcher) readRecord() error {
	f.record = map[string]int64{}
	now := time.Now().Unix()
	fh, err := os.Open(f.recordPath())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fail.Temp(err)
	}
	defer fh.Close()
	s := bufio.NewScanner(fh)
	for s.Scan() {
		k, at, _ := strings.Cut(strings.TrimSpace(s.Text()), " ")
		if k == "" {
			continue
		}
		t, err := strconv.ParseInt(at, 10, 64)
		if err != nil {
			t = now
		}
		f.record[k] = max(f.record[k], t)
	}
	if err := s.Err(); err != nil {
		return fail.Temp(fmt.Errorf("reading %s: %w", f.recordPath(), err))
	}
	return nil
}

func (f *fetcher) delivered(key string) bool {
	f.logMu.Lock()
	defer f.logMu.Unlock()
	_, ok := f.record[key]
	return ok
}

// markDelivered appends the key to the delivered record, durably: it is
// what keeps a message from being delivered twice.
func (f *fetcher) markDelivered(key string) error {
	f.logMu.Lock()
	defer f.logMu.Unlock()
	fh, err := os.OpenFile(f.recordPath(), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	now := time.Now().Unix()
	_, err = fh.WriteString(key + " " + strconv.FormatInt(now, 10) + "\n")
	if err == nil {
		err = fh.Sync()
	}
	if cerr := fh.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = durable.SyncDir(filepath.Dir(f.recordPath()))
	}
	if err == nil {
		f.record[key] = now
	}
	return err
}

// pruneRecord rewrites the delivered record without the lines older than
// life whose notifications are not pending.
func (f *fetcher) pruneRecord(pending []agent.Entry, life time.Duration) error {
	f.logMu.Lock()
	defer f.logMu.Unlock()
	still := map[string]bool{}
	for _, e := range pending {
		still[agent.Key(&e.N)] = true
	}
	old := time.Now().Add(-life).Unix()
	keep := map[string]int64{}
	var b strings.Builder
	for k, at := range f.record {
		if at >= old || still[k] {
			keep[k] = at
			fmt.Fprintf(&b, "%s %d\n", k, at)
		}
	}
	if len(keep) == len(f.record) {
		return nil
	}
	if err := durable.WriteFile(f.recordPath(), []byte(b.String()), 0o600, filepath.Dir(f.recordPath())); err != nil {
		return fail.Temp(err)
	}
	f.record = keep
	return nil
}
