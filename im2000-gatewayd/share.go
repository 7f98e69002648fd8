package main

import (
	"fmt"
	"math"
	"net"
	"path/filepath"
	"time"

	"im2000/lib/agent"
	"im2000/lib/conf"
	"im2000/lib/session"
)

// Every message the gateway takes goes into one archive, the gateway
// account's, under one quota: one stranger sending enough would fill it
// and have every other sender's mail refused (452) for a whole lifetime.
// So one client address (session.AddrKey: an IPv6 address by its /64) may
// fill at most gatewayshare percent of the quota: a token bucket of
// octets per address (lib/agent's Rate, the flock'd files agentd's
// agentrate uses, shared by tcpserver's processes), holding that share
// and refilled by it over one message lifetime. An address that sent its
// whole share at once gets it back over the lifetime, as its messages
// expire; a steady sender gets the share per lifetime. A message larger
// than the share is taken from a full bucket, spending all of it. With no
// quota there is nothing to share, and 0 turns it off (a gateway behind
// another MX sees every message from that MX's address).

// loadShare reads gatewayshare and makes c.share: nil for no limit.
func (c *config) loadShare(d conf.Dir) error {
	pct, err := d.Num("gatewayshare")
	if err != nil {
		return err
	}
	if pct > 100 {
		return fmt.Errorf("%s is %d: write a percent of the quota, 0 to 100 (0: no limit per address)", d.Path("gatewayshare"), pct)
	}
	if pct == 0 || c.quota <= 0 {
		return nil
	}
	// quota/100*pct, without overflow; Rate keeps tokens in thousandths.
	burst := min(c.quota/100*pct+c.quota%100*pct/100, math.MaxInt64/1000)
	burst = max(burst, 1)
	minutes := max(int64(c.lifetime/time.Minute), 1)
	c.share = &agent.Rate{Dir: shareDir(c.root), Burst: burst, PerMinute: max(burst/minutes, 1)}
	c.sharePct = pct
	return nil
}

// takeShare charges n octets to peer's share; false: over it. A bucket
// that cannot be used is logged and the message let in, as a session
// slot that cannot be counted is.
func (c *config) takeShare(peer net.Addr, n int64) bool {
	if c.share == nil {
		return true
	}
	ok, err := c.share.TakeAll(session.IPOf(peer), min(n, c.share.Burst), time.Now())
	if err != nil {
		logShareNotCounted(peer, err)
		return true
	}
	return ok
}

// shareDir holds the per-address buckets.
func shareDir(root string) string { return filepath.Join(root, ".gatewayshare") }
