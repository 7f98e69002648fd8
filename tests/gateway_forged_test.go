package tests

import (
	"fmt"
	"strings"
	"testing"
)

// TestGatewayFirstFolded: a message whose first line starts with a tab or
// a space would, written under the gateway's own Authentication-Results
// field, continue it: "dkim=pass header.d=paypal.com" under this host's
// authserv-id (a hostile review proved bob got exactly that). The gateway
// refuses it at DATA and at BDAT, and stores nothing.
func TestGatewayFirstFolded(t *testing.T) {
	g := newGatewayHost(t, "127.0.0.1:9", nil)
	c := dialSMTP(t, g.gateway)
	c.cmd("EHLO mx.sender.test")
	forged := "\tdkim=pass header.d=paypal.com header.i=@paypal.com;\r\n spf=pass smtp.mailfrom=service@paypal.com\r\nFrom: service@paypal.com\r\nSubject: inj\r\n\r\nbody\r\n"
	c.cmd("MAIL FROM:<mallory@evil.test>")
	c.cmd("RCPT TO:<bob@example.org>")
	if r := c.cmd("DATA"); !strings.HasPrefix(r, "354") {
		t.Fatalf("DATA: %s", r)
	}
	if r := c.cmd(forged + "."); !strings.HasPrefix(r, "554 5.6.0") {
		t.Errorf("a message starting folded over DATA: %s, want 554 5.6.0", r)
	}
	c.cmd("MAIL FROM:<mallory@evil.test>")
	c.cmd("RCPT TO:<bob@example.org>")
	bdat := " x\r\n" + forged
	fmt.Fprintf(c.c, "BDAT %d LAST\r\n%s", len(bdat), bdat)
	if r := c.reply(); !strings.HasPrefix(r, "554 5.6.0") {
		t.Errorf("a message starting folded over BDAT: %s, want 554 5.6.0", r)
	}
	c.cmd("QUIT")
	if n := len(gatewayArchive(t, g.store)); n != 0 {
		t.Errorf("%d messages stored, want none", n)
	}
}
