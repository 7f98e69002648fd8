package store

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"im2000/lib/msgid"
)

// manyRecipients is a submission to n recipients.
func manyRecipients(t testing.TB, n int) Submission {
	sub := submission(t)
	sub.Recipients = nil
	for i := 0; i < n; i++ {
		sub.Recipients = append(sub.Recipients, mustAddr(t, fmt.Sprintf("r%d@example.net", i)))
	}
	return sub
}

// statusBytes is what the message's status files take on disk.
func statusBytes(t testing.TB, a *Account, id msgid.ID) int64 {
	files, _ := filepath.Glob(a.path("status", id) + "*")
	var n int64
	for _, f := range files {
		if fi, err := os.Stat(f); err == nil {
			n += fi.Size()
		}
	}
	return n
}

// TestStatusEventIsSmall: one recipient's event writes the same few dozen
// octets whether the message has 10 recipients or 5,000.
func TestStatusEventIsSmall(t *testing.T) {
	_, a := newAccount(t)
	for _, n := range []int{10, 5000} {
		env, err := inject(t, a, manyRecipients(t, n), "x", Limits{})
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 8; i++ {
			before := statusBytes(t, a, env.ID)
			err := a.Update(env.ID, func(_ *Envelope, st *Status) error {
				r := &st.Recipients[i]
				r.Notification, r.Read, r.Pinned, r.Attempts = Silenced, ReadAll, false, 3
				r.Last, r.Next = time.Now(), time.Now().Add(time.Hour)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if grew := statusBytes(t, a, env.ID) - before; grew <= 0 || grew > 64 {
				t.Fatalf("%d recipients: one event wrote %d octets", n, grew)
			}
		}
		st, err := a.Status(env.ID)
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range st.Recipients {
			if (i < 8) != (r.Notification == Silenced && r.Read == ReadAll && !r.Pinned && r.Attempts == 3) || r.ID != env.Recipients[i].ID {
				t.Fatalf("recipient %d of %d: %+v", i, n, r)
			}
		}
	}
}

// TestJournalTornTail: a record torn by a crash is ignored by readers and
// cut off by the next writer, whose record is then seen.
func TestJournalTornTail(t *testing.T) {
	_, a := newAccount(t)
	env, err := inject(t, a, submission(t), "x", Limits{})
	if err != nil {
		t.Fatal(err)
	}
	set := func(i int, att int64) {
		t.Helper()
		if err := a.Update(env.ID, func(_ *Envelope, st *Status) error { st.Recipients[i].Attempts = att; return nil }); err != nil {
			t.Fatal(err)
		}
	}
	set(0, 1)
	path := a.journalPath(env.ID, 0)
	whole := appendRecord(nil, 1, &RecipientStatus{Attempts: 99, Notification: Silenced})
	for cut := 1; cut < len(whole); cut++ {
		good, _ := os.ReadFile(path)
		os.WriteFile(path, append(append([]byte{}, good...), whole[:cut]...), 0o600)
		st, err := a.Status(env.ID)
		if err != nil || st.Recipients[0].Attempts != 1 || st.Recipients[1].Attempts != 0 {
			t.Fatalf("torn at %d: %v %+v", cut, err, st)
		}
		os.WriteFile(path, good, 0o600)
	}
	// A damaged checksum, then a writer.
	bad := append([]byte{}, whole...)
	bad[len(bad)-1] ^= 1
	f, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	f.Write(bad)
	f.Close()
	set(1, 7)
	st, err := a.Status(env.ID)
	if err != nil || st.Recipients[0].Attempts != 1 || st.Recipients[1].Attempts != 7 {
		t.Fatalf("after a writer past a torn record: %v %+v", err, st)
	}
}

// TestCompactionUnderReaders: writers force compaction after compaction
// while lock-free readers watch every counter; none may ever go back.
func TestCompactionUnderReaders(t *testing.T) {
	defer func(n int64) { compactMin = n }(compactMin)
	compactMin = 200
	_, a := newAccount(t)
	env, err := inject(t, a, manyRecipients(t, 5), "x", Limits{})
	if err != nil {
		t.Fatal(err)
	}
	const writers, each = 4, 150
	var wg sync.WaitGroup
	stop := make(chan struct{})
	errs := make(chan error, 16)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				if err := a.Update(env.ID, func(_ *Envelope, st *Status) error {
					st.Recipients[w].Attempts++
					st.Recipients[4].Attempts++
					return nil
				}); err != nil {
					errs <- err
					return
				}
			}
		}(w)
	}
	var rg sync.WaitGroup
	for r := 0; r < 2; r++ {
		rg.Add(1)
		go func() {
			defer rg.Done()
			seen := make([]int64, 5)
			for {
				select {
				case <-stop:
					return
				default:
				}
				st, err := a.Status(env.ID)
				if err != nil {
					errs <- err
					return
				}
				for i, r := range st.Recipients {
					if r.Attempts < seen[i] {
						errs <- fmt.Errorf("recipient %d went back from %d to %d", i, seen[i], r.Attempts)
						return
					}
					seen[i] = r.Attempts
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	rg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	st, _ := a.Status(env.ID)
	for i, r := range st.Recipients {
		want := int64(each)
		if i == 4 {
			want = writers * each
		}
		if r.Attempts != want {
			t.Fatalf("recipient %d: %d attempts, want %d", i, r.Attempts, want)
		}
	}
	if st.gen == 0 {
		t.Fatal("no compaction happened: the test proved nothing")
	}
	if js, _ := filepath.Glob(a.path("status", env.ID) + ".*.journal"); len(js) > 1 {
		t.Fatalf("old journals left: %v", js)
	}
}

// TestSilencesFromProcesses: a 1,000-recipient message, every recipient
// silenced by one of 8 processes in parallel (retrieved's way: a one-
// recipient update each): every silence is seen, none lost.
func TestSilencesFromProcesses(t *testing.T) {
	s, a := newAccount(t)
	const n, procs = 1000, 8
	env, err := inject(t, a, manyRecipients(t, n), "x", Limits{})
	if err != nil {
		t.Fatal(err)
	}
	var envs [][]string
	for p := range procs {
		envs = append(envs, []string{"IM2000_TEST_SILENCER=1", "STORE=" + s.Root, "ID=" + env.ID.String(),
			"FROM=" + strconv.Itoa(p), "STEP=" + strconv.Itoa(procs)})
	}
	runHelpers(t, "TestHelperSilencer", envs)
	st, err := a.Status(env.ID)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range st.Recipients {
		if r.Notification != Silenced || r.Pinned {
			t.Fatalf("recipient %d lost its silence: %+v", i, r)
		}
	}
}

func TestHelperSilencer(t *testing.T) {
	if os.Getenv("IM2000_TEST_SILENCER") == "" {
		t.Skip("helper process for TestSilencesFromProcesses")
	}
	s, err := Open(os.Getenv("STORE"))
	if err != nil {
		t.Fatal(err)
	}
	a, _ := s.Account("alice")
	id, _ := msgid.Parse(os.Getenv("ID"))
	from, _ := strconv.Atoi(os.Getenv("FROM"))
	step, _ := strconv.Atoi(os.Getenv("STEP"))
	m, err := a.Open(id)
	if err != nil {
		t.Fatal(err)
	}
	n := len(m.Env.Recipients)
	m.Close()
	for i := from; i < n; i += step {
		err := a.Update(id, func(_ *Envelope, st *Status) error {
			st.Recipients[i].Notification, st.Recipients[i].Pinned = Silenced, false
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

func FuzzJournal(f *testing.F) {
	rec := appendRecord(nil, 3, &RecipientStatus{Notification: Notifying, Read: ReadHeaders, Pinned: true, Attempts: 2, Last: time.Unix(100, 0), Next: time.Unix(200, 0)})
	f.Add(rec)
	f.Add(append(append([]byte{}, rec...), rec[:5]...))
	f.Add(append(appendRecord(nil, 0, &RecipientStatus{}), 0, 3, 0, 0, 0, 0, 'x', 'y', 'z'))
	f.Add([]byte{0xff, 0xff, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		recs, valid := parseJournal(b)
		if valid < 0 || valid > len(b) {
			t.Fatalf("valid %d of %d", valid, len(b))
		}
		// What was accepted encodes back to records that read the same.
		var again []byte
		for _, r := range recs {
			if r.index < 0 || r.state.Attempts < 0 {
				t.Fatalf("accepted %+v", r)
			}
			again = appendRecord(again, r.index, &r.state)
		}
		back, n := parseJournal(again)
		if n != len(again) || len(back) != len(recs) {
			t.Fatalf("re-encoded %d records read as %d (%d of %d octets)", len(recs), len(back), n, len(again))
		}
		for i := range back {
			if back[i] != recs[i] {
				t.Fatalf("record %d: %+v, then %+v", i, recs[i], back[i])
			}
		}
		// Folding never touches a recipient's identifier or count.
		st := &Status{Recipients: make([]RecipientStatus, 4)}
		st.fold(recs)
		if len(st.Recipients) != 4 {
			t.Fatal("fold changed the recipients")
		}
	})
}

// TestNotCompactedWhenFinished: the event that makes every recipient
// final appends like any other (a compaction there rewrote the whole
// snapshot, more octets than every silence's record together: issue 17),
// and the folded status says what every event did, the later unpin too.
func TestNotCompactedWhenFinished(t *testing.T) {
	_, a := newAccount(t)
	env, err := inject(t, a, manyRecipients(t, 3), "x", Limits{})
	if err != nil {
		t.Fatal(err)
	}
	snap, err := os.ReadFile(a.path("status", env.ID))
	if err != nil {
		t.Fatal(err)
	}
	update := func(fn func(*Status)) {
		t.Helper()
		if err := a.Update(env.ID, func(_ *Envelope, st *Status) error { fn(st); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 3; i++ {
		update(func(st *Status) { st.Recipients[i].Notification = Silenced })
	}
	update(func(st *Status) { st.Recipients[1].Pinned = false })
	if again, _ := os.ReadFile(a.path("status", env.ID)); string(again) != string(snap) {
		t.Fatal("the snapshot was rewritten")
	}
	j, _ := filepath.Glob(a.path("status", env.ID) + ".*.journal")
	if len(j) != 1 || filepath.Base(j[0]) != env.ID.String()+".0.journal" {
		t.Fatalf("journals: %v", j)
	}
	if fi, _ := os.Stat(j[0]); fi.Size() > 4*32 {
		t.Fatalf("four records took %d octets", fi.Size())
	}
	st, err := a.Status(env.ID)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range st.Recipients {
		if r.Notification != Silenced || r.Pinned != (i != 1) || r.ID != env.Recipients[i].ID {
			t.Fatalf("recipient %d: %+v", i, r)
		}
	}
}
