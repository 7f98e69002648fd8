package fail

import (
	"errors"
	"fmt"
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
