// The queue benchmark's stores: the queued messages committed and left as
// notifyd leaves them, accounts hidden from notifyd between runs, and a
// store copied from the tmpfs onto the disk.

package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"im2000/lib/addr"
	"im2000/lib/agent"
	"im2000/lib/store"
	"im2000/lib/wire/rnaqp"
	"im2000/lib/wire/rnasp"
)

// show makes exactly the named accounts of the store visible to notifyd.
func show(storeDir string, names ...string) {
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	ents, err := os.ReadDir(storeDir)
	must(err)
	for _, e := range ents {
		if !e.IsDir() || e.Name() == "rcpt" || e.Name() == "lists" {
			continue
		}
		name := strings.TrimPrefix(e.Name(), ".")
		hidden := name != e.Name()
		switch {
		case want[name] && hidden:
			must(os.Rename(filepath.Join(storeDir, e.Name()), filepath.Join(storeDir, name)))
		case !want[name] && !hidden:
			must(os.Rename(filepath.Join(storeDir, name), filepath.Join(storeDir, "."+name)))
		}
	}
}

// commit commits one small message.
func commit(a *store.Account, from addr.Mailbox, rcpts []addr.Mailbox, i int) *store.Envelope {
	d, err := a.NewDraft(store.Submission{Sender: from, Lifetime: 24 * time.Hour, Recipients: rcpts}, store.Limits{})
	must(err)
	fmt.Fprintf(d, "Subject: %d\r\n\r\nx\r\n", i)
	env, err := d.Commit()
	must(err)
	return env
}

// fill commits n messages to account name, each to the recipients rcpts
// gives, and leaves them as notifyd leaves a message whose recipients'
// agents have all taken the notification: every recipient notifying, next
// attempt an hour away, the message in queue/. Several committers at once,
// as the store's own services commit.
func (b *queueBench) fill(st *store.Store, name string, n int, rcpts func(i int) []addr.Mailbox) {
	a, err := st.Account(name)
	must(err)
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				env := commit(a, b.from, rcpts(i), i)
				now := time.Now()
				must(a.Update(env.ID, func(_ *store.Envelope, s *store.Status) error {
					for j := range s.Recipients {
						r := &s.Recipients[j]
						r.Notification, r.Attempts, r.Last, r.Next = store.Notifying, 1, now, now.Add(time.Hour)
					}
					return nil
				}))
				must(a.Take(env.ID))
				if i%10000 == 9999 {
					log("%s: %d of %d queued", name, i+1, n)
				}
			}
		}()
	}
	wg.Wait()
	must(a.SyncQueue())
	log("%s: %d messages queued in %v (%.0f/s)", name, n, time.Since(start).Round(time.Millisecond), float64(n)/time.Since(start).Seconds())
}

// key is the name of a notification's file in bob's spool.
func (b *queueBench) key(env *store.Envelope) string {
	return agent.Key(&rnaqp.NotificationAndLocalData{Notification: rnasp.Notification{StoreClear: b.loc, ID: env.Recipients[0].ID}})
}

// copyTree copies the store in src into dst, which exists, and makes it
// durable.
func copyTree(src, dst string) {
	if out, err := exec.Command("cp", "-a", src+"/.", dst).CombinedOutput(); err != nil {
		log("cp: %v: %s", err, out)
		os.Exit(111)
	}
	fd, err := unix.Open(dst, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	must(err)
	must(unix.Syncfs(fd))
	unix.Close(fd)
}
