package store

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func walked(t *testing.T, a *Account) int64 {
	t.Helper()
	n, err := a.walkUsage()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func usage(t *testing.T, a *Account) int64 {
	t.Helper()
	n, err := a.Usage()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestUsageCounter: commits and cancels keep the counter equal to the walk
// it replaces; the quota refuses past it and room comes back on cancel.
func TestUsageCounter(t *testing.T) {
	_, a := newAccount(t)
	var ids []*Envelope
	for i := 0; i < 5; i++ {
		env, err := inject(t, a, submission(t), strings.Repeat("x", 1000), Limits{})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, env)
		if u, w := usage(t, a), walked(t, a); u != w {
			t.Fatalf("after %d commits: counter %d, msg/ %d", i+1, u, w)
		}
	}
	used := usage(t, a)
	lim := Limits{Quota: used + 500}
	if _, err := inject(t, a, submission(t), strings.Repeat("y", 1000), lim); !errors.Is(err, ErrQuota) {
		t.Fatalf("over quota: %v", err)
	}
	if usage(t, a) != used {
		t.Fatal("a refused commit changed the counter")
	}
	if err := a.Cancel(ids[0].ID); err != nil {
		t.Fatal(err)
	}
	if u, w := usage(t, a), walked(t, a); u != w || u >= used {
		t.Fatalf("after a cancel: counter %d, msg/ %d, was %d", u, w, used)
	}
	if _, err := inject(t, a, submission(t), strings.Repeat("y", 1000), lim); err != nil {
		t.Fatalf("room did not come back: %v", err)
	}

	// The counter, not a walk: a file that no commit made is not counted
	// until a rebuild.
	stray := filepath.Join(a.dir, "msg", "stray")
	os.WriteFile(stray, make([]byte, 4096), 0o600)
	before := usage(t, a)
	if _, err := inject(t, a, submission(t), "z", Limits{}); err != nil {
		t.Fatal(err)
	}
	if u := usage(t, a); u-before > 1000 {
		t.Fatalf("commit walked msg/: %d -> %d", before, u)
	}
	if err := a.RebuildUsage(); err != nil {
		t.Fatal(err)
	}
	if u, w := usage(t, a), walked(t, a); u != w {
		t.Fatalf("after a rebuild: counter %d, msg/ %d", u, w)
	}
	os.Remove(stray)

	// What a crash leaves: a change pending, a torn or missing counter.
	want := walked(t, a)
	for name, b := range map[string][]byte{
		"pending": marshalUsage(want+77, 12),
		"torn":    marshalUsage(want+77, 0)[:20],
		"damaged": append(marshalUsage(want+77, 0)[:30], 0, 0, 0, 0, 0, 0),
		"missing": nil,
	} {
		path := filepath.Join(a.dir, "usage")
		if b == nil {
			os.Remove(path)
		} else {
			os.WriteFile(path, b, 0o600)
		}
		if u := usage(t, a); u != want {
			t.Fatalf("%s counter: %d, want the walk's %d", name, u, want)
		}
	}
}

// TestQuotaRace: parallel commits into the last room: exactly as many fit
// as the quota has room for, never more.
func TestQuotaRace(t *testing.T) {
	_, a := newAccount(t)
	env, err := inject(t, a, submission(t), strings.Repeat("x", 1000), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	one := usage(t, a)
	a.Cancel(env.ID)
	lim := Limits{Quota: 3*one + 10} // room for three of them
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := 0
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := inject(t, a, submission(t), strings.Repeat("x", 1000), lim)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case !errors.Is(err, ErrQuota):
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if ok != 3 || usage(t, a) != walked(t, a) || usage(t, a) > lim.Quota {
		t.Fatalf("%d commits fit, usage %d (msg/ %d), quota %d", ok, usage(t, a), walked(t, a), lim.Quota)
	}
}
