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

// TestRateStaleNow: a process that read its clock before waiting for the
// bucket's lock takes after one that read a later time; it must not set
// the bucket's time back, or the next take is refilled the same minutes
// again (third hostile review of issue 20: two hours' refill in one).
func TestRateStaleNow(t *testing.T) {
	for _, r := range []*Rate{
		{PerMinute: 60, Burst: 100000},             // agentd's agentrate
		{Burst: 100000, Refill: 100 * time.Minute}, // gatewayd's share
	} {
		r.Dir = filepath.Join(t.TempDir(), "rate")
		a := netip.MustParseAddr("192.0.2.9")
		t0 := time.Unix(1_800_000_000, 0)
		r.TakeAll(a, r.Burst, t0) // empty
		hour := r.refill(int64(time.Hour), 1<<62) / 1000
		var got int64
		// B (read t0+60m) locks first; A (read t0, waited) next; C at t0+60m.
		for _, at := range []time.Duration{time.Hour, 0, time.Hour} {
			n, err := r.Take(a, r.Burst, t0.Add(at))
			if err != nil {
				t.Fatal(err)
			}
			got += n
		}
		if got != hour {
			t.Errorf("%+v: took %d in one hour, its refill is %d", r, got, hour)
		}
	}
}

// TestRateRefill: with Refill set, an empty bucket gets exactly Burst back
// over Refill however small Burst is against the minutes (a share of 20000
// octets over 30 days is under one a minute).
func TestRateRefill(t *testing.T) {
	r := &Rate{Dir: filepath.Join(t.TempDir(), "rate"), Burst: 20000, Refill: 30 * 24 * time.Hour}
	a := netip.MustParseAddr("192.0.2.7")
	t0 := time.Unix(1_800_000_000, 0)
	got := int64(0)
	for m := time.Duration(0); m <= r.Refill; m += time.Hour {
		n, err := r.Take(a, 1<<40, t0.Add(m))
		if err != nil {
			t.Fatal(err)
		}
		got += n
	}
	// The first take empties the bucket (20000); 30 days later it has
	// had 20000 again, less the thousandth each take may round down.
	if got > 2*r.Burst || got < 2*r.Burst-1000 {
		t.Errorf("took %d over 30 days from a bucket of %d refilled per 30 days", got, r.Burst)
	}
}

// TestRateGive: tokens given back are taken again, never past Burst.
func TestRateGive(t *testing.T) {
	r := &Rate{Dir: filepath.Join(t.TempDir(), "rate"), Burst: 1000, Refill: time.Hour}
	a := netip.MustParseAddr("192.0.2.8")
	now := time.Unix(1_800_000_000, 0)
	if ok, _ := r.TakeAll(a, 800, now); !ok {
		t.Fatal("first take refused")
	}
	if ok, _ := r.TakeAll(a, 800, now); ok {
		t.Fatal("over the bucket taken")
	}
	if err := r.Give(a, 800, now); err != nil {
		t.Fatal(err)
	}
	if ok, _ := r.TakeAll(a, 1000, now); !ok {
		t.Error("tokens given back not taken again")
	}
	r.Give(a, 5000, now)
	if ok, _ := r.TakeAll(a, 1001, now); ok {
		t.Error("Give filled the bucket past Burst")
	}
}
