package main

import (
	"fmt"
	"net"
	"testing"

	"im2000/lib/agent"
)

// TestShareByPrefix (second hostile review of issue 20): the share is
// counted by an IPv6 address's /48, so the /64s of one delegation (here
// 11 of a /56, and one elsewhere in its /48) share one bucket and cannot
// take more than one share between them; another /48, and IPv4 addresses,
// have their own.
func TestShareByPrefix(t *testing.T) {
	quota := int64(200000)
	c := &config{quota: quota, sharePct: 10}
	c.share = &agent.Rate{Dir: t.TempDir(), Burst: quota / 10, PerMinute: max(quota/10/(30*24*60), 1)}
	var got int64
	for i := 0; i < 11; i++ {
		peer := &net.TCPAddr{IP: net.ParseIP(fmt.Sprintf("2001:db8:0:%x::1", i)), Port: 25}
		if c.takeShare(peer, quota/10) {
			got += quota / 10
		}
	}
	if got != quota/10 {
		t.Errorf("the /64s of one /56 were granted %d octets, want one share of %d", got, quota/10)
	}
	if c.takeShare(&net.TCPAddr{IP: net.ParseIP("2001:db8:0:ff00::9")}, 1) {
		t.Error("another /64 of the same /48 was granted an octet")
	}
	for _, other := range []string{"2001:db8:1::1", "192.0.2.1", "192.0.2.2", "::ffff:192.0.2.3"} {
		if !c.takeShare(&net.TCPAddr{IP: net.ParseIP(other)}, quota/10) {
			t.Errorf("%s was refused its own share", other)
		}
	}
}
