package fail

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
)

func TestCode(t *testing.T) {
	base := errors.New("x")
	cases := []struct {
		err  error
		want int
	}{
		{nil, 0},
		{base, Temporary},
		{Perm(base), Permanent},
		{Temp(base), Temporary},
		{fmt.Errorf("wrapped: %w", Perm(base)), Permanent},
	}
	for _, c := range cases {
		if got := Code(c.err); got != c.want {
			t.Errorf("Code(%v) = %d, want %d", c.err, got, c.want)
		}
	}
	if !errors.Is(Perm(base), base) {
		t.Error("Perm hides the wrapped error")
	}
}

func TestRecover(t *testing.T) {
	var b strings.Builder
	Stderr = &b
	defer func() { Stderr = os.Stderr }()
	func() {
		defer Recover("the test's session")
		var s []int
		_ = s[3]
	}()
	line := b.String()
	if !strings.HasPrefix(line, Name+": alert: panic in the test's session: runtime error: index out of range [3] with length 0, at fail.TestRecover.func") ||
		!strings.Contains(line, "(fail_test.go:") || strings.Count(line, "\n") != 1 || strings.Contains(line, "runtime.") {
		t.Errorf("alert %q", line)
	}
	b.Reset()
	func() { defer Recover("nothing") }()
	if b.Len() != 0 {
		t.Errorf("an alert without a panic: %q", b.String())
	}
}

// TestKinds: each kind's line is "name: KIND: message", the form the
// tests' alert detector (tests/main_test.go) and an admin's grep rely on.
func TestKinds(t *testing.T) {
	var b strings.Builder
	Stderr = &b
	defer func() { Stderr = os.Stderr }()
	Info("accepted: %d", 1)
	Warning("refused: %s", "x")
	Alert("panic in %s", "y")
	want := Name + ": info: accepted: 1\n" + Name + ": warning: refused: x\n" + Name + ": alert: panic in y\n"
	if b.String() != want {
		t.Errorf("logged %q, want %q", b.String(), want)
	}
}
