package main

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"im2000/lib/agent"
	"im2000/lib/conf"
)

// TestShareByPrefix (second hostile review of issue 20): the share is
// counted by an IPv6 address's /48, so the /64s of one delegation (here
// 11 of a /56, and one elsewhere in its /48) share one bucket and cannot
// take more than one share between them; another /48, and IPv4 addresses,
// have their own.
func TestShareByPrefix(t *testing.T) {
	quota := int64(200000)
	c := &config{quota: quota, sharePct: 10}
	c.share = &agent.Rate{Dir: t.TempDir(), Burst: quota / 10, Refill: 30 * 24 * time.Hour}
	var got int64
	for i := 0; i < 11; i++ {
		peer := &net.TCPAddr{IP: net.ParseIP(fmt.Sprintf("2001:db8:0:%x::1", i)), Port: 25}
		if _, ok := c.takeShare(peer, quota/10); ok {
			got += quota / 10
		}
	}
	if got != quota/10 {
		t.Errorf("the /64s of one /56 were granted %d octets, want one share of %d", got, quota/10)
	}
	if _, ok := c.takeShare(&net.TCPAddr{IP: net.ParseIP("2001:db8:0:ff00::9")}, 1); ok {
		t.Error("another /64 of the same /48 was granted an octet")
	}
	for _, other := range []string{"2001:db8:1::1", "192.0.2.1", "192.0.2.2", "::ffff:192.0.2.3"} {
		if _, ok := c.takeShare(&net.TCPAddr{IP: net.ParseIP(other)}, quota/10); !ok {
			t.Errorf("%s was refused its own share", other)
		}
	}
}

// testShare is loadShare's share for quota at 10% and a 30-day lifetime.
func testShare(t *testing.T, quota int64) *config {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "gatewayshare"), []byte("10\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := &config{root: t.TempDir(), quota: quota, lifetime: 30 * 24 * time.Hour}
	if err := c.loadShare(conf.Dir(dir)); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestShareRefillPerLifetime (third hostile review of issue 20): the
// share refills one share per lifetime however small: a whole number of
// octets a minute, at least 1, refilled a 20000-octet share (quota
// 200000) 63200 octets in one lifetime.
func TestShareRefillPerLifetime(t *testing.T) {
	c := testShare(t, 200000)
	a := netip.MustParseAddr("192.0.2.7")
	now := time.Unix(1_800_000_000, 0)
	var got int64
	for m := 0; m <= 30*24*60; m += 60 { // one take an hour, for one lifetime
		for {
			ok, _ := c.share.TakeAll(a, 50, now.Add(time.Duration(m)*time.Minute))
			if !ok {
				break
			}
			got += 50
		}
	}
	if got > 2*c.share.Burst {
		t.Errorf("one address took %d in one lifetime: its share %d and one share's refill", got, c.share.Burst)
	}
}

// TestShareConcurrent: sessions of one /48 racing for its bucket (the
// flock'd file tcpserver's processes share) never take more than it holds
// and what it refills meanwhile.
func TestShareConcurrent(t *testing.T) {
	c := testShare(t, 2000000)
	start := time.Now()
	var got atomic.Int64
	var wg sync.WaitGroup
	n := c.share.Burst / 50
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			peer := &net.TCPAddr{IP: net.ParseIP(fmt.Sprintf("2001:db8:5:%x::1", g))}
			for i := int64(0); i < n/4; i++ {
				if _, ok := c.takeShare(peer, 50); ok {
					got.Add(50)
				}
			}
		}(g)
	}
	wg.Wait()
	refill := int64(float64(c.share.Burst)*float64(time.Since(start))/float64(c.share.Refill)) + 1
	if got.Load() > c.share.Burst+refill {
		t.Errorf("16 racers of one /48 took %d of a share of %d (refill meanwhile %d)", got.Load(), c.share.Burst, refill)
	}
}

// TestShareStaleNow (third hostile review of issue 20): a session that
// read its clock before waiting for the bucket's lock takes after one
// that read a later time; the same hour must not be refilled twice.
func TestShareStaleNow(t *testing.T) {
	c := testShare(t, 1<<30)
	a := netip.MustParseAddr("192.0.2.9")
	t0 := time.Unix(1_800_000_000, 0)
	c.share.TakeAll(a, c.share.Burst, t0) // empty
	hour := c.share.Burst / int64(c.share.Refill/time.Hour)
	var got int64
	// B (read t0+60m) locks first; A (read t0, waited) next; C at t0+60m.
	for _, at := range []time.Duration{60 * time.Minute, 0, 60 * time.Minute} {
		for {
			ok, _ := c.share.TakeAll(a, 100, t0.Add(at))
			if !ok {
				break
			}
			got += 100
		}
	}
	if got > hour {
		t.Errorf("took %d in one hour, its refill is %d", got, hour)
	}
}

// TestShareRefund: a charge given back is taken again, and given back
// once only however often refund is called.
func TestShareRefund(t *testing.T) {
	c := testShare(t, 200000)
	peer := &net.TCPAddr{IP: net.ParseIP("192.0.2.10")}
	ch, ok := c.takeShare(peer, 15000)
	if !ok {
		t.Fatal("first charge refused")
	}
	if _, ok := c.takeShare(peer, 15000); ok {
		t.Fatal("a second 15000 granted from a share of 20000")
	}
	ch.refund()
	ch.refund()
	if _, ok := c.takeShare(peer, 15000); !ok {
		t.Fatal("a refunded charge was not taken again")
	}
	if _, ok := c.takeShare(peer, 15000); ok {
		t.Error("a charge refunded twice")
	}
}
