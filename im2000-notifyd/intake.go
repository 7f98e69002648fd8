package main

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"im2000/lib/msgid"
	"im2000/lib/store"
)

// Intake brings messages from the disk into the schedule: at start every
// message in queue/ and todo/ of every account (the rebuild), afterwards
// only todo/, which holds just the messages committed since. A commit
// writes its account's name to the trigger FIFO, so a new message costs a
// read of one short directory; every scanInterval all todo/ directories are
// read as well, for wake-ups lost while notifyd was down or the FIFO full.

// scanInterval bounds how long a message whose wake-up was lost waits.
const scanInterval = 15 * time.Second

// loaded is one message read from the disk: either entries for the
// schedule, or nothing (gone, or finished and taken off the queue).
type loaded struct {
	msg     *message
	domains []string
	entries []*entry
}

// intake runs in its own goroutine and sends what it loads to out in
// chunks, so the scheduler starts on the first messages of a long rebuild
// at once.
type intake struct {
	st   *store.Store
	out  chan<- []loaded
	wake *wakeups
	// queue/ is read once per archive (at start, or when an archive is
	// first seen); what failed to load from it is tried again at every
	// scan, as todo/ is, so nothing queued is forgotten until a restart.
	queueRead map[string]bool                  // archives whose queue/ has been read
	retry     map[string]map[msgid.ID]struct{} // messages in queue/ that could not be loaded
}

const chunk = 256

// minFullScan spaces the scans of every todo/ that junk in the FIFO asks
// for, so that a local user writing junk cannot keep the intake busy.
const minFullScan = 2 * time.Second

func (in *intake) run(stop <-chan struct{}) {
	in.queueRead = map[string]bool{}
	in.retry = map[string]map[msgid.ID]struct{}{}
	names, _ := in.accounts()
	in.scan(names)
	lastAll := time.Now()
	tick := time.NewTicker(scanInterval)
	defer tick.Stop()
	var allSoon <-chan time.Time
	for {
		var named map[string]bool
		all := false
		select {
		case <-stop:
			return
		case <-in.wake.c:
			named, all = in.wake.take()
			if all && time.Since(lastAll) < minFullScan {
				if allSoon == nil {
					allSoon = time.After(minFullScan - time.Since(lastAll))
				}
				all = false
			}
		case <-allSoon:
			all = true
		case <-tick.C:
			all = true
		}
		var names []string
		if all {
			allSoon, lastAll = nil, time.Now()
			names, _ = in.accounts()
		} else {
			for name := range named {
				names = append(names, name)
			}
		}
		in.scan(names)
	}
}

// accounts lists every archive, for a full scan.
func (in *intake) accounts() ([]string, error) {
	names, err := in.st.Accounts()
	if err != nil {
		logAccountsUnreadable(err)
	}
	return names, err
}

// scan loads the new messages in the named archives' todo/, and whatever
// of their queue/ is still to be loaded (at start: all of it).
func (in *intake) scan(names []string) {
	var batch []loaded
	add := func(l loaded) {
		batch = append(batch, l)
		if len(batch) >= chunk {
			in.out <- batch
			batch = nil
		}
	}
	for _, name := range names {
		// Names may come from the FIFO, which anyone may write: an
		// archive is looked at only when it exists, never made.
		a, err := in.st.Existing(name)
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				logArchiveUnreadable(name, err)
			}
			continue
		}
		in.loadQueue(a, add)
		ids, err := a.Todo()
		if err != nil {
			logArchiveUnreadable(name, err)
			continue
		}
		for _, id := range ids {
			l, ok := loadMessage(a, id, time.Now())
			if !ok {
				continue // stays in todo/, for the next scan
			}
			// Taken before the scheduler has it: a crash from here on
			// finds it in queue/ at the next start.
			if l.msg != nil {
				if err := a.Take(id); err != nil {
					logNotQueued(name+"/"+id.String(), err)
				}
			}
			add(l)
		}
		if len(ids) > 0 {
			if err := a.SyncQueue(); err != nil {
				logNotQueued(name, err)
			}
		}
	}
	if len(batch) > 0 {
		in.out <- batch
	}
}

// loadQueue loads what of an archive's queue/ is not in the schedule yet:
// all of it at start, afterwards only what failed to load before.
func (in *intake) loadQueue(a *store.Account, add func(loaded)) {
	var ids []msgid.ID
	if !in.queueRead[a.Name] {
		var err error
		if ids, err = a.Queue(); err != nil {
			logArchiveUnreadable(a.Name, err)
			return
		}
		in.queueRead[a.Name] = true
	} else {
		for id := range in.retry[a.Name] {
			ids = append(ids, id)
		}
	}
	delete(in.retry, a.Name)
	for _, id := range ids {
		l, ok := loadMessage(a, id, time.Now())
		if !ok {
			if in.retry[a.Name] == nil {
				in.retry[a.Name] = map[msgid.ID]struct{}{}
			}
			in.retry[a.Name][id] = struct{}{}
			continue
		}
		add(l)
	}
}

// errMismatch: a sidecar whose recipients are not the envelope's.
var errMismatch = errors.New("the status does not match the envelope")

// loadMessage reads one message for the schedule: its sender, size,
// lifetime and the recipients still to be notified, due as their sidecar
// says. A message with none left, or past its lifetime, leaves the queue
// here (loaded with no msg). ok is false when it could not be read; it
// stays queued and is tried at the next scan.
func loadMessage(a *store.Account, id msgid.ID, now time.Time) (l loaded, ok bool) {
	defer func() {
		if p := recover(); p != nil {
			logPanic("loading "+a.Name+"/"+id.String(), p)
			ok = false
		}
	}()
	m, err := a.Open(id)
	if errors.Is(err, store.ErrNoSuch) {
		dequeue(a, id) // cancelled meanwhile
		return loaded{}, true
	}
	if err != nil {
		logUnreadable(a.Name, id, err)
		return loaded{}, false
	}
	defer m.Close()
	st, err := a.Status(id)
	if err != nil {
		logUnreadable(a.Name, id, err)
		return loaded{}, false
	}
	env := m.Env
	if len(st.Recipients) != len(env.Recipients) {
		logUnreadable(a.Name, id, errMismatch)
		return loaded{}, false
	}
	if now.After(env.Expires()) {
		logExpired(a.Name, id)
		dequeue(a, id)
		return loaded{}, true
	}
	msg := &message{acct: a, id: id, sender: env.Sender.String(), size: uint64(m.Size()), expires: env.Expires().Unix()}
	for i, rs := range st.Recipients {
		if rs.Notification.Final() {
			continue
		}
		rcpt := env.Recipients[i]
		l.domains = append(l.domains, rcpt.Addr.Domain)
		// Never tried: due since the commit, so that new mail takes its
		// turn in the order it came, not before everything queued.
		due := env.Submitted.UnixNano()
		if !rs.Next.IsZero() {
			due = rs.Next.UnixNano()
		}
		// The local part is copied out of the envelope, which would
		// otherwise stay in memory for its sake.
		l.entries = append(l.entries, &entry{rid: rcpt.ID, local: strings.Clone(rcpt.Addr.Local), index: int32(i), state: rs.Notification, due: due})
	}
	if len(l.entries) == 0 {
		dequeue(a, id)
		return loaded{}, true
	}
	l.msg = msg
	return l, true
}

// dequeue takes a message off the queue. A failure only leaves its link,
// to be found and dropped again at the next start, but it is said.
func dequeue(a *store.Account, id msgid.ID) {
	if err := a.Done(id); err != nil {
		logNotDequeued(a.Name, id, err)
	}
}

// wakeups collects the account names written to the trigger FIFO until the
// intake takes them: a set, so a burst of commits costs one scan per
// account.
type wakeups struct {
	mu       sync.Mutex
	accounts map[string]bool
	all      bool
	c        chan struct{}
}

func (w *wakeups) add(line []byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if name := string(line); store.CheckAccount(name) == nil {
		if w.accounts == nil {
			w.accounts = map[string]bool{}
		}
		if len(w.accounts) < 10000 || w.accounts[name] {
			w.accounts[name] = true
		} else {
			w.all = true
		}
	} else {
		w.all = true // an old writer's single byte, or junk: look everywhere
	}
	select {
	case w.c <- struct{}{}:
	default:
	}
}

// take returns the accounts named since the last take, and whether junk
// asked for a look at every account.
func (w *wakeups) take() (map[string]bool, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	a, all := w.accounts, w.all
	w.accounts, w.all = nil, false
	return a, all
}

// maxLine is longer than any line a commit writes (an account name).
const maxLine = 256

// listen opens the store's FIFO, creating it if need be, and feeds what
// commits write to it into a wakeups. Opened for reading and writing, it
// never reports end of file when writers come and go.
func listen(st *store.Store) (*wakeups, error) {
	path := st.TriggerPath()
	if err := unix.Mkfifo(path, 0o622); err != nil && !errors.Is(err, unix.EEXIST) {
		return nil, fmt.Errorf("trigger %s: %v", path, err)
	} else if err == nil {
		// Every local user whose archive is in this store commits, and
		// wakes notifyd: writable for all, whatever the umask.
		os.Chmod(path, 0o622)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	w := &wakeups{c: make(chan struct{}, 1)}
	go func() {
		buf := make([]byte, 4096)
		var partial []byte
		for {
			n, err := f.Read(buf)
			if err != nil {
				time.Sleep(time.Second)
				continue
			}
			data := buf[:n]
			for {
				i := bytes.IndexByte(data, '\n')
				if i < 0 {
					break
				}
				w.add(append(partial, data[:i]...))
				partial, data = partial[:0], data[i+1:]
			}
			partial = append(partial, data...)
			// Commits write whole lines at once, so a fragment left when
			// the FIFO is drained is junk (kept, it would spoil the next
			// commit's name and lose that wake-up), and so is one longer
			// than any name: neither is kept.
			if len(partial) > 0 && (n < len(buf) || len(partial) > maxLine) {
				w.add(partial)
				partial = partial[:0]
			}
		}
	}()
	return w, nil
}
