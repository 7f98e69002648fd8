package store

import (
	"os"
	"os/exec"
	"strconv"
	"testing"

	"im2000/lib/msgid"
)

// TestConcurrentUpdaters runs updaters as separate processes, each adding
// to the attempt counter under the store's lock; none may be lost.
func TestConcurrentUpdaters(t *testing.T) {
	if os.Getenv("IM2000_TEST_UPDATER") != "" {
		return
	}
	s, a := newAccount(t)
	env, err := inject(t, a, submission(t), "x", Limits{})
	if err != nil {
		t.Fatal(err)
	}
	const procs, each = 8, 25
	var envs [][]string
	for range procs {
		envs = append(envs, []string{"IM2000_TEST_UPDATER=1", "STORE=" + s.Root, "ID=" + env.ID.String(), "N=" + strconv.Itoa(each)})
	}
	runHelpers(t, "TestHelperUpdater", envs)
	st, err := a.Status(env.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range st.Recipients {
		if r.Attempts != procs*each {
			t.Fatalf("attempts = %d, want %d: updates were lost", r.Attempts, procs*each)
		}
	}
}

func TestHelperUpdater(t *testing.T) {
	if os.Getenv("IM2000_TEST_UPDATER") == "" {
		t.Skip("helper process for TestConcurrentUpdaters")
	}
	s, err := Open(os.Getenv("STORE"))
	if err != nil {
		t.Fatal(err)
	}
	a, _ := s.Account("alice")
	id, _ := msgid.Parse(os.Getenv("ID"))
	n, _ := strconv.Atoi(os.Getenv("N"))
	for i := 0; i < n; i++ {
		err := a.Update(id, func(_ *Envelope, st *Status) error {
			for j := range st.Recipients {
				st.Recipients[j].Attempts++
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// runHelpers runs the test named helper in a process of this test binary
// for each of envs (added to this environment), all at once, and waits for
// every one: updaters in separate processes, as notifyd and retrieved are.
func runHelpers(t *testing.T, helper string, envs [][]string) {
	t.Helper()
	var cmds []*exec.Cmd
	for _, e := range envs {
		c := exec.Command(os.Args[0], "-test.run=^"+helper+"$")
		c.Env = append(os.Environ(), e...)
		c.Stderr = os.Stderr
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, c)
	}
	for _, c := range cmds {
		if err := c.Wait(); err != nil {
			t.Fatal(err)
		}
	}
}
