package tests

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"im2000/lib/msgid"
	"im2000/lib/store"
)

// TestCrashInject SIGKILLs im2000-inject at random points during hundreds of
// injections, two at a time, then checks that every message whose id was
// printed is there and complete, that every committed message is complete
// (envelope, status, queue entry, recipient and list links), that nothing
// half-written is visible, and that Clean removes all debris.
func TestCrashInject(t *testing.T) {
	e := newEnv(t, "alice")
	e.setConf("lists/crash", "alice")
	const runs, workers = 300, 2
	var (
		mu           sync.Mutex
		printed      = map[string]string{} // id -> token
		killed, done int
	)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
			for i := 0; i < runs/workers; i++ {
				token := fmt.Sprintf("tok-%d-%d", w, i)
				body := "Subject: " + token + "\n\n" + token + "\n" + strings.Repeat("filler line\n", rng.IntN(40000)) + "END " + token + "\n"
				args := []string{"-i", "bob@example.net", "carol@example.com"}
				if i%3 == 0 {
					args = append(args, "-l", "crash")
				}
				cmd := exec.Command(filepath.Join(bin, "im2000-inject"), args...)
				cmd.Env = e.vars
				cmd.Stdin = strings.NewReader(body)
				var out bytes.Buffer
				cmd.Stdout = &out
				if err := cmd.Start(); err != nil {
					t.Error(err)
					return
				}
				time.AfterFunc(time.Duration(rng.IntN(60000))*time.Microsecond, func() { cmd.Process.Signal(syscall.SIGKILL) })
				err := cmd.Wait()
				mu.Lock()
				if err == nil {
					printed[strings.TrimSpace(out.String())] = token
					done++
				} else if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
					killed++
				} else {
					t.Errorf("inject failed without being killed: %v", err)
				}
				mu.Unlock()
			}
		}(w)
	}
	wg.Wait()
	t.Logf("%d injections completed, %d killed", done, killed)
	if done == 0 || killed == 0 {
		t.Fatalf("the kill points missed: %d completed, %d killed; both must happen for the test to mean anything", done, killed)
	}

	s, err := store.Open(e.store)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := s.Account("alice")
	check := func(when string) {
		ids, err := a.Messages()
		if err != nil {
			t.Fatal(err)
		}
		todo, _ := a.Todo()
		inTodo := map[msgid.ID]bool{}
		for _, id := range todo {
			inTodo[id] = true
		}
		seen := map[string]bool{}
		for _, id := range ids {
			seen[id.String()] = true
			checkComplete(t, s, a, id, inTodo[id], printed[id.String()])
		}
		for id := range printed {
			if !seen[id] {
				t.Errorf("%s: message %s was reported committed but is gone", when, id)
			}
		}
		if len(todo) != len(ids) {
			t.Errorf("%s: %d queue entries for %d messages", when, len(todo), len(ids))
		}
		list, err := s.ScanList("crash", time.Time{}, time.Now().Add(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range list {
			if _, err := os.Stat(filepath.Join(e.store, "rcpt", l.ID.String())); err != nil {
				t.Errorf("%s: list entry %s is visible but has no message", when, l.ID)
			}
		}
		t.Logf("%s: %d messages complete, %d list entries", when, len(ids), len(list))
	}
	check("after the kills")

	if err := s.Clean(time.Now().Add(store.StaleAge + time.Minute)); err != nil {
		t.Fatal(err)
	}
	check("after Clean")
	if ents, _ := os.ReadDir(filepath.Join(e.store, "alice", "tmp")); len(ents) != 0 {
		t.Errorf("Clean left %d temporary files", len(ents))
	}
	statuses, _ := os.ReadDir(filepath.Join(e.store, "alice", "status"))
	msgs, _ := os.ReadDir(filepath.Join(e.store, "alice", "msg"))
	if len(statuses) != len(msgs) {
		t.Errorf("after Clean: %d status files for %d messages", len(statuses), len(msgs))
	}
	filepath.Walk(e.store, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode()&os.ModeSymlink != 0 {
			if _, err := os.Stat(p); err != nil {
				t.Errorf("after Clean: dangling link %s", p)
			}
		}
		return nil
	})
}

// checkComplete verifies one committed message and every piece that must
// come with it.
func checkComplete(t *testing.T, s *store.Store, a *store.Account, id msgid.ID, queued bool, token string) {
	t.Helper()
	m, err := a.Open(id)
	if err != nil {
		t.Errorf("%s: %v", id, err)
		return
	}
	defer m.Close()
	body, err := io.ReadAll(m.Body())
	if err != nil {
		t.Errorf("%s: %v", id, err)
		return
	}
	first, _, _ := strings.Cut(strings.SplitN(string(body), "\r\n\r\n", 2)[1], "\r\n")
	if token != "" && first != token || !bytes.HasSuffix(body, []byte("END "+first+"\r\n")) {
		t.Errorf("%s: message is incomplete or not what was sent (token %q, first line %q, %d bytes)", id, token, first, len(body))
	}
	st, err := a.Status(id)
	if err != nil || len(st.Recipients) != len(m.Env.Recipients) || len(st.Lists) != len(m.Env.Lists) {
		t.Errorf("%s: status %v, %v", id, st, err)
	}
	if !queued {
		t.Errorf("%s: committed without a queue entry", id)
	}
	for i, r := range m.Env.Recipients {
		rm, j, err := s.Lookup(r.ID, time.Now())
		if err != nil {
			t.Errorf("%s: recipient %s: %v", id, r.ID, err)
			continue
		}
		if rm.Env.ID != id || rm.Account != "alice" || j != i {
			t.Errorf("%s: recipient %s opens %s/%s (index %d)", id, r.ID, rm.Account, rm.Env.ID, j)
		}
		rm.Close()
	}
	for _, l := range m.Env.Lists {
		found := false
		entries, _ := s.ScanList(l.Name, m.Env.Submitted, time.Now().Add(time.Minute))
		for _, le := range entries {
			found = found || le.ID == l.ID
		}
		if !found {
			t.Errorf("%s: not in the index of list %s", id, l.Name)
		}
	}
}

// TestDiskFull injects into a store on a real 1 MiB tmpfs: a message that
// does not fit fails with 111 and leaves nothing, and the store keeps
// working for one that fits. The tmpfs is mounted in a private mount
// namespace (unshare), so it vanishes with the test whatever happens.
func TestDiskFull(t *testing.T) {
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Fatal("unshare (util-linux) is needed to mount a small tmpfs")
	}
	e := newEnv(t, "alice")
	e.setConf("databytes", "10000000")
	dir := t.TempDir()
	big := filepath.Join(t.TempDir(), "big")
	os.WriteFile(big, bytes.Repeat([]byte("0123456789abcdef0123456789abcdef0123456789abcdef012345678901234\n"), 2<<20/64), 0o644)
	script := `set -u
mount -t tmpfs -o size=1m tmpfs "$D" || exit 99
mkdir "$D/store"
"$INJECT" bob@example.net < "$BIG" > /dev/null; echo "big $?"
find "$D/store" ! -type d ! -path "$D/store/.key" | sort | sed 's/^/left /'
echo small | "$INJECT" bob@example.net > /dev/null; echo "small $?"
find "$D/store" ! -type d | sort | sed 's/^/after /'
`
	args := []string{"-m"}
	if os.Geteuid() != 0 {
		args = append(args, "-r") // map ourselves to root in a user namespace
	}
	cmd := exec.Command(unshare, append(args, "sh", "-c", script)...)
	cmd.Env = append(e.vars, "D="+dir, "INJECT="+filepath.Join(bin, "im2000-inject"), "BIG="+big, "IM2000_STORE="+dir+"/store")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("unshare: %v: %s", err, out)
	}
	text := string(out)
	t.Logf("%s", text)
	if !strings.Contains(text, "big 111\n") || !strings.Contains(strings.ToLower(text), "no space left on device") {
		t.Errorf("a message larger than the disk did not fail with 111 and ENOSPC")
	}
	// The store's key (made when the store is first opened) is no
	// debris of the injection.
	if strings.Contains(text, "\nleft ") {
		t.Errorf("the failed injection left files behind")
	}
	if !strings.Contains(text, "small 0\n") || strings.Count(text, "after ") < 4 {
		t.Errorf("the store did not work after the disk-full failure (want a message, its status, queue entry and link)")
	}
}
