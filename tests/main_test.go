// Package tests runs the real programs: it builds every im2000-* binary once
// and drives them as a user or a mail client would.
package tests

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// bin holds the freshly built programs.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "im2000-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	programs, _ := filepath.Glob("../im2000-*")
	programs = append(programs, "./testserver")
	cmd := exec.Command("go", append([]string{"build", "-o", dir + "/"}, programs...)...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0") // as the Makefile builds them
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building the programs:", err)
		os.Exit(1)
	}
	bin = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// env is a throwaway deployment: a store and a config directory.
type env struct {
	t     *testing.T
	store string
	conf  string
	vars  []string
}

func newEnv(t *testing.T, account string) *env {
	e := &env{t: t, store: filepath.Join(t.TempDir(), "store"), conf: t.TempDir()}
	if err := os.Mkdir(e.store, 0o755); err != nil {
		t.Fatal(err)
	}
	os.Mkdir(filepath.Join(e.conf, "lists"), 0o755)
	e.setConf("me", "example.org")
	e.vars = []string{"IM2000_STORE=" + e.store, "IM2000_CONF=" + e.conf, "IM2000_ACCOUNT=" + account, "PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "TZ=UTC"}
	return e
}

func (e *env) setConf(name, value string) {
	if err := os.WriteFile(filepath.Join(e.conf, name), []byte(value+"\n"), 0o644); err != nil {
		e.t.Fatal(err)
	}
}

// result is what a program run left.
type result struct {
	code           int
	stdout, stderr string
}

// run runs a program from bin with stdin and returns its exit code and output.
func (e *env) run(stdin string, prog string, args ...string) result {
	e.t.Helper()
	cmd := exec.Command(filepath.Join(bin, prog), args...)
	cmd.Env = e.vars
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if x, ok := err.(*exec.ExitError); ok {
		code = x.ExitCode()
	} else if err != nil {
		e.t.Fatalf("%s: %v", prog, err)
	}
	checkLog(e.t, prog, errb.String())
	return result{code, out.String(), errb.String()}
}

// alarming is what no program may ever log: an alert (a panic stopped at
// a session's boundary, see lib/fail) or a panic that was not stopped.
var alarming = regexp.MustCompile(`(?m)alert: |^panic: |^goroutine \d+ \[`)

// checkLog fails the test when a program's log has an alert or a panic.
func checkLog(t testing.TB, prog, log string) {
	t.Helper()
	if loc := alarming.FindStringIndex(log); loc != nil {
		start := strings.LastIndex(log[:loc[0]], "\n") + 1
		end := min(len(log), loc[1]+2000)
		t.Errorf("%s logged an alert or a panic:\n%s", prog, log[start:end])
	}
}

// inject runs im2000-inject and requires success; it returns the message id.
func (e *env) inject(stdin string, args ...string) string {
	e.t.Helper()
	r := e.run(stdin, "im2000-inject", args...)
	if r.code != 0 {
		e.t.Fatalf("im2000-inject %v: exit %d: %s", args, r.code, r.stderr)
	}
	id := strings.TrimSpace(r.stdout)
	if len(id) != 32 {
		e.t.Fatalf("im2000-inject printed %q, not a message id", r.stdout)
	}
	return id
}
