package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// shortLived commits a message with a list that lives one second.
func shortLived(t *testing.T, a *Account) *Envelope {
	t.Helper()
	sub := submission(t, "l")
	sub.Lifetime = time.Second
	env, err := inject(t, a, sub, "short", Limits{})
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// traces lists every file of the store that names the message or one of
// its identifiers, or points at it.
func traces(t *testing.T, s *Store, env *Envelope) []string {
	t.Helper()
	names := []string{env.ID.String()}
	for _, r := range env.Recipients {
		names = append(names, r.ID.String())
	}
	for _, l := range env.Lists {
		names = append(names, l.ID.String())
	}
	var out []string
	filepath.WalkDir(s.Root, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		target, _ := os.Readlink(path)
		for _, n := range names {
			if strings.Contains(d.Name(), n) || strings.Contains(target, n) {
				out = append(out, path)
				break
			}
		}
		return nil
	})
	return out
}

func TestReapExpired(t *testing.T) {
	s, a := newAccount(t)
	keep, err := inject(t, a, submission(t, "l"), "kept", Limits{})
	if err != nil {
		t.Fatal(err)
	}
	env := shortLived(t, a)
	if err := a.Update(env.ID, func(_ *Envelope, st *Status) error { st.Recipients[0].Read = ReadAll; return nil }); err != nil {
		t.Fatal(err)
	}
	if len(traces(t, s, env)) < 6 {
		t.Fatalf("the message left too few traces to prove anything: %v", traces(t, s, env))
	}
	r, err := s.Reap(time.Now(), nil)
	if err != nil || r != (Reaped{}) {
		t.Fatalf("reaped a live message: %+v %v", r, err)
	}
	r, err = s.Reap(env.Expires().Add(time.Second), nil)
	if err != nil || r.Expired != 1 {
		t.Fatalf("Reap: %+v %v", r, err)
	}
	if tr := traces(t, s, env); len(tr) != 0 {
		t.Fatalf("left after reaping: %v", tr)
	}
	if _, err := a.Status(env.ID); !errors.Is(err, ErrNoSuch) {
		t.Fatalf("Status after reaping: %v", err)
	}
	if u, w := usage(t, a), walked(t, a); u != w {
		t.Fatalf("usage %d, msg/ %d", u, w)
	}
	if len(traces(t, s, keep)) < 6 {
		t.Fatal("the live message lost traces")
	}
}

// TestReapInterrupted stops a removal after each of its steps, as a crash
// would, and checks that the store stays consistent and Reap finishes.
func TestReapInterrupted(t *testing.T) {
	for step := 1; step <= 4; step++ {
		t.Run(fmt.Sprint(step), func(t *testing.T) {
			s, a := newAccount(t)
			env := shortLived(t, a)
			os.Mkdir(filepath.Join(a.dir, "reap"), 0o700)
			os.Symlink("../msg/"+env.ID.String(), a.path("reap", env.ID))
			if step >= 2 {
				os.Remove(a.s.locatorPath(env.ID)) // half of step 2
			}
			if step >= 3 { // step 2 done, 3 as well
				for _, tr := range traces(t, s, env) {
					if d := filepath.Base(filepath.Dir(tr)); d != "msg" && d != "reap" {
						os.Remove(tr)
					}
				}
			}
			if step >= 4 {
				os.Remove(a.path("msg", env.ID)) // the counter left pending
				os.WriteFile(filepath.Join(a.dir, "usage"), marshalUsage(999, -999), 0o600)
			}
			// Still early: the mark is finished all the same.
			r, err := s.Reap(time.Now(), nil)
			if err != nil {
				t.Fatal(err)
			}
			if tr := traces(t, s, env); len(tr) != 0 {
				t.Fatalf("after step %d and a rerun (%+v): %v", step, r, tr)
			}
			if u, w := usage(t, a), walked(t, a); u != w || u != 0 {
				t.Fatalf("usage %d, msg/ %d", u, w)
			}
		})
	}
}

func TestEarlyReclaim(t *testing.T) {
	for _, on := range []bool{false, true} {
		t.Run(fmt.Sprint(on), func(t *testing.T) {
			s, a := newAccount(t)
			env, err := inject(t, a, submission(t), "x", Limits{})
			if err != nil {
				t.Fatal(err)
			}
			listed, err := inject(t, a, submission(t, "l"), "x", Limits{})
			if err != nil {
				t.Fatal(err)
			}
			silence := func(id *Envelope, n int) {
				a.Update(id.ID, func(_ *Envelope, st *Status) error {
					for i := 0; i < n; i++ {
						st.Recipients[i].Notification, st.Recipients[i].Pinned = Silenced, false
					}
					return nil
				})
			}
			early := func(string) bool { return on }
			silence(env, 1)
			silence(listed, 2)
			if r, _ := s.Reap(time.Now(), early); r != (Reaped{}) {
				t.Fatalf("reclaimed with a recipient pinned, or a list message: %+v", r)
			}
			silence(env, 2)
			r, err := s.Reap(time.Now(), early)
			if err != nil {
				t.Fatal(err)
			}
			gone := len(traces(t, s, env)) == 0
			if gone != on || (on && r.Reclaimed != 1) || len(traces(t, s, listed)) == 0 {
				t.Fatalf("early reclaim %v: reaped %+v, message gone %v", on, r, gone)
			}
		})
	}
}

func TestCancelLeavesNothing(t *testing.T) {
	s, a := newAccount(t)
	env := shortLived(t, a)
	if err := a.Cancel(env.ID); err != nil {
		t.Fatal(err)
	}
	if tr := traces(t, s, env); len(tr) != 0 {
		t.Fatalf("left after cancel: %v", tr)
	}
	if err := a.Cancel(env.ID); !errors.Is(err, ErrNoSuch) {
		t.Fatalf("second cancel: %v", err)
	}
}

// TestReapIndex: the first Reap of an account walks its archive once and
// completes the expiry index; from then on Reap reads only the index's
// days (a message whose link is gone is not found), and without the
// "complete" mark it walks the archive again. A past day left empty goes.
func TestReapIndex(t *testing.T) {
	s, a := newAccount(t)
	sub := submission(t)
	sub.Lifetime = 30 * 24 * time.Hour
	long, err := inject(t, a, sub, "kept", Limits{})
	if err != nil {
		t.Fatal(err)
	}
	var short []*Envelope
	for i := 0; i < 3; i++ {
		short = append(short, shortLived(t, a))
	}
	complete := filepath.Join(a.dir, "expire", expireComplete)
	if _, err := os.Stat(complete); err == nil {
		t.Fatal("complete before any Reap")
	}
	if r, err := s.Reap(time.Now().Add(-time.Hour), nil); err != nil || r != (Reaped{}) {
		t.Fatalf("first Reap: %+v %v", r, err)
	}
	if _, err := os.Stat(complete); err != nil {
		t.Fatalf("the first Reap did not complete the index: %v", err)
	}
	hidden := short[0]
	if err := os.Remove(a.expirePath(hidden)); err != nil {
		t.Fatal(err)
	}
	later := hidden.Expires().Add(48 * time.Hour)
	r, err := s.Reap(later, nil)
	if err != nil || r.Expired != 2 {
		t.Fatalf("indexed Reap: %+v %v (want the 2 linked ones)", r, err)
	}
	if _, err := a.Open(hidden.ID); err != nil {
		t.Fatalf("the unlinked message was found without the index: %v", err)
	}
	if _, err := os.Stat(filepath.Dir(a.expirePath(hidden))); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the emptied past day is still there: %v", err)
	}
	os.Remove(complete)
	if r, err := s.Reap(later, nil); err != nil || r.Expired != 1 {
		t.Fatalf("Reap rebuilding the index: %+v %v", r, err)
	}
	if _, err := os.Stat(complete); err != nil {
		t.Fatalf("the rebuild did not complete the index: %v", err)
	}
	if _, err := os.Lstat(a.expirePath(long)); err != nil {
		t.Fatalf("the live message has no expiry link: %v", err)
	}
	if ids, _ := a.Messages(); len(ids) != 1 || ids[0] != long.ID {
		t.Fatalf("left: %v", ids)
	}
}
