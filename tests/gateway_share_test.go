package tests

import (
	"bufio"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
	nc, err := d.Dial("tcp", g.gateway)
	if err != nil {
		t.Fatal(err)
	}
	c2 := &smtpConn{t: t, c: nc, r: bufio.NewReader(nc)}
	defer nc.Close()
	c2.reply()
	c2.cmd("EHLO mx.friend.test")
	c2.cmd("MAIL FROM:<f@friend.test>")
	c2.cmd("RCPT TO:<bob@example.org>")
	c2.cmd("DATA")
	if r := c2.cmd("Subject: hi\r\n\r\n" + strings.Repeat(strings.Repeat("y", 98)+"\r\n", 20) + "."); !strings.HasPrefix(r, "250") {
		t.Errorf("another address, 2 KB message: %s, want 250", r)
	}
}
