package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"im2000/lib/store"
)

// TestGatewayShareCharged (second hostile review of issue 20): the share
// is charged what the quota is charged, the gateway's own fields included.
// Charged only the client's octets, 201 messages of "x" with a 250-octet
// envelope sender (3 octets each sent, about 1,000 stored) filled 199,593
// of a 200,000 quota from one address; every other address then got 452.
func TestGatewayShareCharged(t *testing.T) {
	g := newGatewayHost(t, "127.0.0.1:9", func(e *env) { e.setConf("quota", "200000") })
	local := strings.Repeat("a", 64)
	dom := strings.Repeat("b", 60) + "." + strings.Repeat("c", 60) + "." + strings.Repeat("d", 60) + ".test"
	c := dialSMTP(t, g.gateway)
	c.cmd("EHLO mx.evil.test")
	taken := 0
	var last string
	for i := 0; i < 1000; i++ {
		c.cmd("MAIL FROM:<" + local + "@" + dom + ">")
		c.cmd("RCPT TO:<bob@example.org>")
		c.cmd("DATA")
		if last = c.cmd("x\r\n."); !strings.HasPrefix(last, "250") {
			break
		}
		taken++
	}
	c.cmd("QUIT")
	if !strings.HasPrefix(last, "452 4.3.1") {
		t.Errorf("after %d messages: %s, want 452 4.3.1 (share full)", taken, last)
	}
	var stored int64
	filepath.Walk(filepath.Join(g.store, "smtp", "msg"), func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			stored += fi.Size()
		}
		return nil
	})
	t.Logf("one address: %d messages taken, %d octets stored of a share of 20000", taken, stored)
	if stored > 20000 {
		t.Errorf("one address stored %d octets, over its share of 20000 (10%% of 200000)", stored)
	}
	c2 := dialSMTPFrom(t, g.gateway, "127.0.0.2")
	c2.cmd("EHLO mx.friend.test")
	c2.cmd("MAIL FROM:<f@friend.test>")
	c2.cmd("RCPT TO:<bob@example.org>")
	c2.cmd("DATA")
	if r := c2.cmd("Subject: hi\r\n\r\n" + strings.Repeat(strings.Repeat("y", 98)+"\r\n", 20) + "."); !strings.HasPrefix(r, "250") {
		t.Errorf("another address, 2 KB message: %s, want 250", r)
	}
}

// TestGatewayShareRefundedOnRefusal (third hostile review of issue 20): a
// message the store refuses at commit (the archive full of others' mail)
// costs its sender no share. Charged and kept, two 15000-octet tries
// while the archive was full spent the address's 20000 share on nothing,
// and once room freed its 5000-octet message was still refused 452.
func TestGatewayShareRefundedOnRefusal(t *testing.T) {
	g := newGatewayHost(t, "127.0.0.1:9", func(e *env) { e.setConf("quota", "200000") })
	send := func(ip byte, size int) string {
		c := dialSMTPFrom(t, g.gateway, fmt.Sprintf("127.0.0.%d", ip))
		defer c.c.Close()
		c.cmd("EHLO x.test")
		c.cmd("MAIL FROM:<f@friend.test>")
		c.cmd("RCPT TO:<bob@example.org>")
		c.cmd("DATA")
		r := c.cmd("Subject: s\r\n\r\n" + strings.Repeat(strings.Repeat("y", 98)+"\r\n", size/100) + ".")
		c.cmd("QUIT")
		return r
	}
	for ip := byte(10); ip < 20; ip++ {
		if r := send(ip, 18000); !strings.HasPrefix(r, "250") {
			t.Fatalf("filler from 127.0.0.%d: %s", ip, r)
		}
	}
	for i := 0; i < 2; i++ {
		if r := send(2, 15000); !strings.HasPrefix(r, "452") {
			t.Fatalf("15000 octets into a full archive, try %d: %s, want 452", i, r)
		}
	}
	// Room comes back (two messages expire).
	s, err := store.Open(g.store)
	if err != nil {
		t.Fatal(err)
	}
	a, err := s.Account("smtp")
	if err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(filepath.Join(g.store, "smtp", "msg"))
	for _, e := range ents[:2] {
		os.Remove(filepath.Join(g.store, "smtp", "msg", e.Name()))
	}
	if err := a.RebuildUsage(); err != nil {
		t.Fatal(err)
	}
	if r := send(2, 5000); !strings.HasPrefix(r, "250") {
		t.Errorf("an address that stored nothing, 5000 octets once room freed: %s, want 250", r)
	}
	left, _ := os.ReadDir(filepath.Join(g.store, "smtp", "tmp"))
	for _, e := range left {
		t.Errorf("left in smtp/tmp after refusals: %s", e.Name())
	}
}
