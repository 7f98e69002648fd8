package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"im2000/lib/fail"
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
}

const chunk = 256

func (in *intake) run(stop <-chan struct{}) {
	in.scan(nil, true)
	tick := time.NewTicker(scanInterval)
	defer tick.Stop()
	for {
		var accounts map[string]bool
		select {
		case <-stop:
			return
		case <-in.wake.c:
			accounts = in.wake.take()
		case <-tick.C:
		}
		in.scan(accounts, false)
	}
}

// scan loads the new messages of the named accounts, of every account when
// accounts is nil, and with all also those already queued (the rebuild).
func (in *intake) scan(accounts map[string]bool, all bool) {
	var names []string
	if accounts == nil {
		var err error
		if names, err = in.st.Accounts(); err != nil {
			fail.Warn("listing accounts: %v", err)
			return
		}
	}
	for name := range accounts {
		// Anyone may write to the FIFO: a name is looked at only when
		// that archive exists, never made by asking.
		if fi, err := os.Stat(filepath.Join(in.st.Root, name, "todo")); err == nil && fi.IsDir() {
			names = append(names, name)
		}
	}
	var batch []loaded
	flush := func() {
		if len(batch) > 0 {
			in.out <- batch
			batch = nil
		}
	}
	for _, name := range names {
		a, err := in.st.Account(name)
		if err != nil {
			fail.Warn("%s: %v", name, err)
			continue
		}
		if all {
			ids, err := a.Queue()
			if err != nil {
				fail.Warn("%s: %v", name, err)
			}
			for _, id := range ids {
				if l, ok := loadMessage(a, id, time.Now()); ok {
					batch = append(batch, l)
				}
				if len(batch) >= chunk {
					flush()
				}
			}
		}
		ids, err := a.Todo()
		if err != nil {
			fail.Warn("%s: %v", name, err)
			continue
		}
		for _, id := range ids {
			l, ok := loadMessage(a, id, time.Now())
			if !ok {
				continue
			}
			// Taken before the scheduler has it: a crash from here on
			// finds it in queue/ at the next start.
			if l.msg != nil {
				if err := a.Take(id); err != nil {
					fail.Warn("%s/%s: %v", name, id, err)
				}
			}
			batch = append(batch, l)
			if len(batch) >= chunk {
				flush()
			}
		}
		if len(ids) > 0 {
			if err := a.SyncQueue(); err != nil {
				fail.Warn("%s: %v", name, err)
			}
		}
		flush()
	}
	flush()
}

// loadMessage reads one message for the schedule: its sender, size,
// lifetime and the recipients still to be notified, due as their sidecar
// says. A message with none left, or past its lifetime, leaves the queue
// here (loaded with no msg). ok is false when it could not be read; it
// stays queued and is tried at the next scan.
func loadMessage(a *store.Account, id msgid.ID, now time.Time) (l loaded, ok bool) {
	defer func() {
		if p := recover(); p != nil {
			fail.Alert("%s", fail.Panicked("loading "+a.Name+"/"+id.String(), p))
			ok = false
		}
	}()
	m, err := a.Open(id)
	if errors.Is(err, store.ErrNoSuch) {
		a.Done(id) // cancelled meanwhile
		return loaded{}, true
	}
	if err != nil {
		fail.Warn("%s/%s: %v", a.Name, id, err)
		return loaded{}, false
	}
	defer m.Close()
	st, err := a.Status(id)
	if err != nil {
		fail.Warn("%s/%s: %v", a.Name, id, err)
		return loaded{}, false
	}
	env := m.Env
	if len(st.Recipients) != len(env.Recipients) {
		fail.Warn("%s/%s: the status does not match the envelope", a.Name, id)
		return loaded{}, false
	}
	if now.After(env.Expires()) {
		fail.Warn("%s/%s: lifetime over, no more notifications", a.Name, id)
		a.Done(id)
		return loaded{}, true
	}
	msg := &message{acct: a, id: id, sender: env.Sender.String(), size: uint64(m.Size()), expires: env.Expires().Unix()}
	for i, rs := range st.Recipients {
		if rs.Notification.Final() {
			continue
		}
		rcpt := env.Recipients[i]
		l.domains = append(l.domains, rcpt.Addr.Domain)
		l.entries = append(l.entries, &entry{rid: rcpt.ID, local: rcpt.Addr.Local, index: int32(i), state: rs.Notification, due: dueTime(rs.Next)})
	}
	if len(l.entries) == 0 {
		a.Done(id)
		return loaded{}, true
	}
	l.msg = msg
	return l, true
}

// dueTime turns a sidecar's next attempt into schedule time; never tried is
// due at once.
func dueTime(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
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
		if len(w.accounts) < 10000 {
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

// take returns the accounts to scan, nil for all.
func (w *wakeups) take() map[string]bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	a := w.accounts
	if w.all {
		a = nil
	}
	w.accounts, w.all = nil, false
	return a
}

// listen opens the store's FIFO, creating it if need be, and feeds what
// commits write to it into a wakeups. Opened for reading and writing, it
// never reports end of file when writers come and go.
func listen(st *store.Store) (*wakeups, error) {
	path := st.TriggerPath()
	if err := unix.Mkfifo(path, 0o622); err != nil && !errors.Is(err, unix.EEXIST) {
		return nil, fmt.Errorf("trigger %s: %v", path, err)
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
			partial = append(partial, buf[:n]...)
			for {
				i := bytes.IndexByte(partial, '\n')
				if i < 0 {
					break
				}
				w.add(partial[:i])
				partial = partial[i+1:]
			}
			if len(partial) > 256 { // no name is that long: junk
				w.add(partial)
				partial = nil
			}
		}
	}()
	return w, nil
}
