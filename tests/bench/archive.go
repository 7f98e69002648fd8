package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"im2000/lib/addr"
	"im2000/lib/msgid"
	"im2000/lib/store"
)

// benchArchive measures issue 17 (the archive over its life): what a
// message's status events write, per recipient, for 1,000 and 10,000
// recipients all notified and all silenced; and a commit's time into an
// account holding 100,000 messages against an empty one.
//
// The store's writes are counted in this process's /proc/self/io, which
// does them all through lib/store as notifyd and retrieved would: wchar is
// the octets passed to write(2) (what the store's formats cost), and
// write_bytes what the kernel sent to the disk on its behalf (pages: a
// fsynced append of 20 octets dirties a whole 4 KiB page).
func benchArchive() {
	fmt.Printf("\n## The archive over its life (issue 17)\n\n")
	fmt.Printf("| recipients | commit: written (write(2)) | notify + silence: written (write(2)) | per recipient | to the disk (pages) | per recipient |\n|---|---|---|---|---|---|\n")
	for _, n := range []int{1000, 10000} {
		archiveStatus(n)
	}
	commitVsSize(100000)
}

// selfIO reads this process's wchar and write_bytes.
func selfIO() (wchar, disk int64) {
	b, err := os.ReadFile("/proc/self/io")
	must(err)
	for _, l := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(l, ": ")
		n, _ := strconv.ParseInt(v, 10, 64)
		switch k {
		case "wchar":
			wchar = n
		case "write_bytes":
			disk = n
		}
	}
	return
}

func benchAccount() (*store.Account, string, func()) {
	dir, err := os.MkdirTemp(benchDir(), "archive")
	must(err)
	s, err := store.Open(dir)
	must(err)
	a, err := s.Account("alice")
	must(err)
	return a, filepath.Join(dir, "alice"), func() { os.RemoveAll(dir) }
}

// benchDir is where the bench's stores go: $TMPDIR unless it is a tmpfs
// would hide the disk; the working directory is on a disk.
func benchDir() string {
	d, err := os.Getwd()
	must(err)
	return d
}

func commitTo(a *store.Account, rcpts []addr.Mailbox, body []byte) *store.Envelope {
	from, _ := addr.Parse("alice@example.org")
	d, err := a.NewDraft(store.Submission{Sender: from, Lifetime: 24 * time.Hour, Recipients: rcpts}, store.Limits{})
	must(err)
	_, err = d.Write(body)
	must(err)
	env, err := d.Commit()
	must(err)
	return env
}

func archiveStatus(n int) {
	a, _, done := benchAccount()
	defer done()
	var rcpts []addr.Mailbox
	for i := 0; i < n; i++ {
		m, _ := addr.Parse(fmt.Sprintf("r%d@example.net", i))
		rcpts = append(rcpts, m)
	}
	body := append([]byte("Subject: bench\r\n\r\n"), bytes.Repeat([]byte("0123456789abcde\n"), 640)...)
	c0, _ := selfIO()
	env := commitTo(a, rcpts, body)
	c1, d1 := selfIO()
	// notifyd: outcomes recorded a batch of 1,000 at a time.
	now := time.Now()
	for lo := 0; lo < n; lo += 1000 {
		must(a.Update(env.ID, func(_ *store.Envelope, st *store.Status) error {
			for i := lo; i < min(lo+1000, n); i++ {
				r := &st.Recipients[i]
				r.Notification, r.Attempts, r.Last, r.Next = store.Notifying, r.Attempts+1, now, now.Add(time.Hour)
			}
			return nil
		}))
	}
	// retrieved: one silence per recipient, each its own update, eight
	// at a time.
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < n; i += 8 {
				must(a.Update(env.ID, func(_ *store.Envelope, st *store.Status) error {
					st.Recipients[i].Notification, st.Recipients[i].Next = store.Silenced, time.Time{}
					return nil
				}))
			}
		}(w)
	}
	wg.Wait()
	w2, d2 := selfIO()
	st, err := a.Status(env.ID)
	must(err)
	for _, r := range st.Recipients {
		if r.Notification != store.Silenced {
			panic("a silence was lost")
		}
	}
	fmt.Printf("| %d | %d | %d | **%d** | %d | %d |\n", n, c1-c0, w2-c1, (w2-c1)/int64(n), d2-d1, (d2-d1)/int64(n))
}

// commitVsSize times commits into an empty account and into one holding
// size messages (hard links to one message file under fresh names: what
// a commit could walk is the directory, whatever the files hold).
func commitVsSize(size int) {
	a, adir, done := benchAccount()
	defer done()
	rcpt, _ := addr.Parse("bob@example.net")
	body := append([]byte("Subject: bench\r\n\r\n"), bytes.Repeat([]byte("x"), 10<<10)...)
	timeCommits := func() time.Duration {
		var ds []time.Duration
		for i := 0; i < 200; i++ {
			t0 := time.Now()
			commitTo(a, []addr.Mailbox{rcpt}, body)
			ds = append(ds, time.Since(t0))
		}
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		return ds[len(ds)/2]
	}
	empty := timeCommits()
	ids, err := a.Messages()
	must(err)
	orig, err := os.ReadFile(filepath.Join(adir, "msg", ids[0].String()))
	must(err)
	var src string
	for i := 0; i < size; i++ {
		name := filepath.Join(adir, "msg", msgid.New().String())
		if i%50000 == 0 { // a file has at most 65,000 links on ext4
			must(os.WriteFile(name, orig, 0o600))
			src = name
			continue
		}
		must(os.Link(src, name))
	}
	must(a.RebuildUsage())
	full := timeCommits()
	fmt.Printf("\nCommit (10 KiB, one recipient, median of 200) into an empty account: %v; into one holding %d messages: %v. Ratio **%.2f×**.\n",
		empty.Round(time.Microsecond), size, full.Round(time.Microsecond), full.Seconds()/empty.Seconds())
}
