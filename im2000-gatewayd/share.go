package main

import (
	"fmt"
	"math"
	"net"
	"net/netip"
	"path/filepath"
	"time"

	"im2000/lib/agent"
	"im2000/lib/conf"
	"im2000/lib/session"
	"im2000/lib/store"
)

// Every message the gateway takes goes into one archive, the gateway
// account's, under one quota: one stranger sending enough would fill it
// and have every other sender's mail refused (452) for a whole lifetime.
// So one client address (shareKey: IPv4 by address, IPv6 by its /48) may
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
	// Refilled burst per lifetime exactly (Rate's Refill): a whole
	// number of octets a minute, at least 1, refilled a share under
	// 43200 octets (30 days) faster than one share per lifetime.
	c.share = &agent.Rate{Dir: shareDir(c.root), Burst: burst, Refill: max(c.lifetime, time.Minute)}
	c.sharePct = pct
	return nil
}

// takeShare charges n octets to peer's share; ok false: over it. A
// bucket that cannot be used is logged and the message let in, as a
// session slot that cannot be counted is. The charge is given back with
// refund when what it paid for is not stored.
func (c *config) takeShare(peer net.Addr, n int64) (ch *charge, ok bool) {
	if c.share == nil {
		return &charge{}, true
	}
	ch = &charge{c: c, peer: peer, n: min(n, c.share.Burst)}
	ok, err := c.share.TakeAll(shareKey(session.IPOf(peer)), ch.n, time.Now())
	if err != nil {
		logShareNotCounted(peer, err)
		return &charge{}, true
	}
	if !ok {
		return &charge{}, false
	}
	return ch, true
}

// A charge is octets taken from one address's share, to be given back
// (refund) when the message is not stored after all: the store refused
// it at commit (the archive full of others' mail, an I/O error). Kept,
// an honest MTA retrying while the archive is full spends its share on
// nothing and is still refused once room frees (third hostile review of
// issue 20). A charge is given back at most once.
type charge struct {
	c    *config
	peer net.Addr
	n    int64
}

// refund gives the charge back; a second call does nothing.
func (ch *charge) refund() {
	if ch.c == nil || ch.n <= 0 {
		return
	}
	n := ch.n
	ch.n = 0
	// A bucket that cannot be written now was logged when charged or
	// will be at the next charge; the octets are then lost to the
	// address, as before refunds.
	ch.c.share.Give(shareKey(session.IPOf(ch.peer)), n, time.Now())
}

// shareDir holds the per-address buckets.
func shareDir(root string) string { return filepath.Join(root, ".gatewayshare") }

// shareKey is the address a share is counted by: an IPv4 address whole,
// an IPv6 address by its /48 (Rate then names the file by AddrKey of the
// /48's first address). Not the /64 of sessionsperaddr: a customer is
// delegated a /48 to a /56, 256 to 65536 /64s, and by /64 one host took a
// full share with each of 11 /64s of its /56 (second hostile review of
// issue 20). The share is about one sender's hold on the archive, not
// about how many sessions one host may open, so the wider prefix is right
// here; sharing it with a /48's neighbours costs them only a slower pace.
func shareKey(a netip.Addr) netip.Addr {
	a = a.Unmap()
	if !a.Is6() {
		return a
	}
	p, err := a.WithZone("").Prefix(48)
	if err != nil {
		return a
	}
	return p.Addr()
}

// storedSize is what the draft will add to the quota once committed: the
// message file, that is the envelope and every octet written (lib/store's
// usage counts the files in msg/).
func storedSize(d *store.Draft) int64 {
	return int64(len(d.Envelope().Marshal())) + d.Size()
}
