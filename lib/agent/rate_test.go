package agent

import (
	"net/netip"
	"path/filepath"
	"testing"
	"time"
)

// TestRateTakeAll: TakeAll takes the whole request or nothing; a refusal
// spends no token, so asking again later succeeds once the bucket holds
// enough (im2000-gatewayd charges a message's octets so).
func TestRateTakeAll(t *testing.T) {
	r := &Rate{Dir: filepath.Join(t.TempDir(), "rate"), PerMinute: 60, Burst: 100}
	a := netip.MustParseAddr("192.0.2.1")
	now := time.Unix(1_800_000_000, 0)
	for _, step := range []struct {
		n     int64
		after time.Duration
		want  bool
	}{{70, 0, true}, {40, 0, false}, {40, 0, false}, {30, 0, true}, {1, 0, false}, {10, 10 * time.Second, true}, {1, 10 * time.Second, false}} {
		if ok, err := r.TakeAll(a, step.n, now.Add(step.after)); ok != step.want || err != nil {
			t.Fatalf("TakeAll(%d) after %v: %v, %v; want %v", step.n, step.after, ok, err, step.want)
		}
	}
	if ok, _ := (&Rate{Dir: r.Dir}).TakeAll(a, 1<<40, now); !ok {
		t.Error("no rate (PerMinute 0) refused")
	}
}
