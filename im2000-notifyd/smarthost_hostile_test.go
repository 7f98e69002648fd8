package main

// Hostile relays against the hand-off (the review of issue 20): each test
// failed on the code before it.

import (
	"crypto/x509"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"im2000/lib/conf"
	"im2000/lib/locate"
	"im2000/lib/store"
	"im2000/lib/tlsconf"
)

// TestSmarthostSessionRefusalTemporary: a relay that refuses the session
// (535 to AUTH after a password change, a 554 greeting) makes every
// recipient noserver, tried again, not refused for good; a 5xx to one
// RCPT refuses that recipient only, and its 4xx leaves it temporary.
func TestSmarthostSessionRefusalTemporary(t *testing.T) {
	cfg := relayConfig(5 * time.Second)
	for name, b := range map[string]relayScript{
		"AUTH 535":     {ehlo: "250-AUTH PLAIN\r\n", auth: "535 5.7.8 Error: authentication failed\r\n"},
		"554 greeting": {greet: "554 5.3.2 no service to you now\r\n"},
		"421 greeting": {greet: "421 4.3.2 busy\r\n"},
	} {
		relay, _ := scriptedRelay(t, b)
		_, l := queued(t, 2)
		s := &smarthost{addr: relay, host: "127.0.0.1", me: "example.org", user: "u", pass: "old"}
		st, session := s.send(cfg, "example.net", l.entries)
		if st[0] != store.NoServer || st[1] != store.NoServer || !session {
			t.Errorf("%s: states %v, session %v; want noserver for both, the session failed", name, st, session)
		}
	}
	relay, saw := scriptedRelay(t, relayScript{rcpt: func(line string) string {
		switch {
		case strings.Contains(line, "r0@"):
			return "550 5.1.1 no such user\r\n"
		case strings.Contains(line, "r1@"):
			return "450 4.2.0 try later\r\n"
		}
		return "250 ok\r\n"
	}})
	_, l := queued(t, 3)
	s := &smarthost{addr: relay, host: "127.0.0.1", me: "example.org"}
	st, session := s.send(cfg, "example.net", l.entries)
	if st[0] != store.Refused || st[1] != store.NoServer || st[2] != store.SMTP || session {
		t.Errorf("RCPT 550, 450, 250: %v (session %v)", st, session)
	}
	if _, datas, _ := saw.get(); len(datas) != 1 {
		t.Errorf("DATA sent %d times", len(datas))
	}
}

// TestSmarthostEHLOName: notifyd greets with its me setting, before TLS
// and inside it (go-smtp's default is "localhost", which relays that
// check the HELO name refuse at RCPT).
func TestSmarthostEHLOName(t *testing.T) {
	cert, pool := selfSigned(t, "relay.test")
	relay, saw := scriptedRelay(t, relayScript{cert: &cert, ehlo: "250-STARTTLS\r\n"})
	_, l := queued(t, 1)
	cfg := relayConfig(5 * time.Second)
	cfg.loc = &locate.Locator{TLS: tlsconf.NewClient(pool, nil, nil)}
	s := &smarthost{addr: relay, host: "relay.test", me: "mail.example.org"}
	if st, _ := s.send(cfg, "example.net", l.entries); st[0] != store.SMTP {
		t.Fatalf("state %v", st[0])
	}
	lines, _, _ := saw.get()
	var ehlos []string
	tlsAt := -1
	for i, x := range lines {
		if strings.HasPrefix(x, "EHLO") {
			ehlos = append(ehlos, x)
		}
		if x == "--- TLS ---" {
			tlsAt = i
		}
	}
	if len(ehlos) != 2 || tlsAt < 0 || ehlos[0] != "EHLO mail.example.org" || ehlos[1] != "EHLO mail.example.org" {
		t.Fatalf("greetings %q (TLS at line %d), want EHLO mail.example.org before and inside TLS", ehlos, tlsAt)
	}
}

// TestSmarthostRecordedAtFinalDot: a message's state and hand-off record
// are on disk once the relay answers its final dot, while the batch's
// next message is still being handed off and before the relay answers
// QUIT; and a reply to the dot later than the timeout (a content filter)
// still counts, so the message is not handed again.
func TestSmarthostRecordedAtFinalDot(t *testing.T) {
	relay, _ := scriptedRelay(t, relayScript{
		greetDelay: func(n int) time.Duration {
			if n > 1 {
				return 3 * time.Second
			}
			return 0
		},
		quitDelay: 30 * time.Second,
	})
	a, _ := queued(t, 1)
	var batch []*entry
	var ls []loaded
	for i := 0; i < 2; i++ {
		l := draftMsg(t, a, "Subject: m\r\n\r\nx\r\n", 1)
		ls = append(ls, l)
		batch = append(batch, l.entries...)
	}
	cfg := relayConfig(5 * time.Second)
	s := &smarthost{addr: relay, host: "127.0.0.1", me: "example.org"}
	done := make(chan []outcome, 1)
	go func() { out, _ := s.handOff(cfg, "example.net", batch); done <- out }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		st, err := a.Status(ls[0].msg.id)
		if err == nil && st.Recipients[0].Notification == store.SMTP {
			hs, _ := a.HandOffs(ls[0].msg.id)
			if len(hs) != 1 || hs[0].Relay != relay || hs[0].Reply != "2.0.0 Ok: queued as Q1" || hs[0].Domain != "example.net" {
				t.Fatalf("hand-off record %+v", hs)
			}
			if !hs[0].At.Equal(st.Recipients[0].Last) {
				t.Fatalf("record at %v, recipient's last attempt %v", hs[0].At, st.Recipients[0].Last)
			}
			break
		}
		select {
		case <-done:
			t.Fatal("message 1 not on disk before the batch was over")
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("message 1 never recorded")
		}
		time.Sleep(50 * time.Millisecond)
	}
	<-done

	slow, saw := scriptedRelay(t, relayScript{afterData: func(int) { time.Sleep(3 * time.Second) }})
	_, l := queued(t, 1)
	s = &smarthost{addr: slow, host: "127.0.0.1", me: "example.org"}
	if st, _ := s.send(relayConfig(time.Second), "example.net", l.entries); st[0] != store.SMTP {
		t.Fatalf("a reply to the final dot 3 s late (timeout 1 s): %v", st[0])
	}
	if _, datas, _ := saw.get(); len(datas) != 1 {
		t.Fatalf("sent %d times", len(datas))
	}
}

// TestSmarthostTarpitBatch: a relay that never greets costs a batch one
// connection and one timeout, not one per message; at SIGTERM the rest of
// a batch is put back untried.
func TestSmarthostTarpitBatch(t *testing.T) {
	relay, saw := scriptedRelay(t, relayScript{greetDelay: func(int) time.Duration { return time.Minute }})
	a, _ := queued(t, 1)
	var batch []*entry
	for i := 0; i < 5; i++ {
		batch = append(batch, draftMsg(t, a, "Subject: m\r\n\r\nx\r\n", 1).entries...)
	}
	s := &smarthost{addr: relay, host: "127.0.0.1", me: "example.org"}
	out, _ := s.handOff(relayConfig(time.Second), "example.net", batch)
	if _, _, conns := saw.get(); conns != 1 {
		t.Errorf("%d connections for a batch of 5 to a tarpit", conns)
	}
	for i, o := range out {
		if o.state != store.NoServer || o.untried {
			t.Errorf("message %d: %v, want noserver", i, o)
		}
	}
	smarthostStop.Store(true)
	defer smarthostStop.Store(false)
	out, _ = s.handOff(relayConfig(time.Second), "example.net", batch)
	for i, o := range out {
		if !o.untried {
			t.Errorf("after SIGTERM, message %d: %v, want untried", i, o)
		}
	}
}

// TestSmarthostLineEnds: a bare CR or LF in the stored body reaches the
// relay as CRLF, so "\r.\r\n" cannot end the data early (SMTP smuggling),
// and a leading dot after it is stuffed.
func TestSmarthostLineEnds(t *testing.T) {
	relay, saw := scriptedRelay(t, relayScript{ehlo: "250-8BITMIME\r\n"})
	a, _ := queued(t, 1)
	body := "Subject: dots\r\n\r\n.lead\r\nbare LF\n.after LF\nbare CR\r.after CR\r\n" +
		"smuggle1\n.\nMAIL FROM:<x@y>\n" + "smuggle2\r.\r\nx\r\n" + "smuggle3\n.\r\nRCPT\r\nends in CR\r"
	l := draftMsg(t, a, body, 1)
	s := &smarthost{addr: relay, host: "127.0.0.1", me: "example.org"}
	if st, _ := s.send(relayConfig(5*time.Second), "example.net", l.entries); st[0] != store.SMTP {
		t.Fatalf("state %v", st[0])
	}
	_, datas, _ := saw.get()
	want := "Subject: dots\r\n\r\n..lead\r\nbare LF\r\n..after LF\r\nbare CR\r\n..after CR\r\n" +
		"smuggle1\r\n..\r\nMAIL FROM:<x@y>\r\n" + "smuggle2\r\n..\r\nx\r\n" + "smuggle3\r\n..\r\nRCPT\r\nends in CR\r\n.\r\n"
	if len(datas) != 1 || datas[0] != want {
		t.Fatalf("the relay got %q\nwant %q", datas, want)
	}
}

// TestSmarthostSeenAfterVerify: a relay whose certificate does not verify
// is not remembered as reached over verified TLS (tlsseen).
func TestSmarthostSeenAfterVerify(t *testing.T) {
	cert, _ := selfSigned(t, "relay.test")
	relay, _ := scriptedRelay(t, relayScript{cert: &cert, ehlo: "250-STARTTLS\r\n"})
	_, l := queued(t, 1)
	cfg := relayConfig(5 * time.Second)
	tr := &tlsconf.Tracker{Dir: t.TempDir()}
	cfg.loc = &locate.Locator{TLS: tlsconf.NewClient(x509.NewCertPool(), nil, tr)}
	s := &smarthost{addr: relay, host: "relay.test", me: "example.org"}
	st, _ := s.send(cfg, "example.net", l.entries)
	if _, seen := tr.Seen("smtp", "relay.test"); seen || st[0] != store.TLSBadCert {
		t.Fatalf("bad certificate: state %v, remembered as verified TLS: %v", st[0], seen)
	}
}

// TestSmarthostSizeAnd8bit: SIZE= and BODY=8BITMIME when the relay offers
// them; a message over its SIZE, or 8-bit to a relay without 8BITMIME, is
// not sent: refused when the relay said so inside verified TLS or from a
// loopback address, noserver (tried again) when its EHLO came in cleartext
// from another host, where anyone on the path may have written
// "250-SIZE 1000" or struck 8BITMIME (third review).
func TestSmarthostSizeAnd8bit(t *testing.T) {
	cfg := relayConfig(5 * time.Second)
	a, _ := queued(t, 1)
	body := "Subject: caf\xc3\xa9\r\n\r\n" + strings.Repeat("x", 2000) + "\r\n"
	mailLine := func(saw *relaySaw) string {
		lines, _, _ := saw.get()
		for _, x := range lines {
			if strings.HasPrefix(x, "MAIL") {
				return x
			}
		}
		return ""
	}
	// The admin's own MTA on loopback: no one on the path, its word holds.
	for name, ehlo := range map[string]string{"over SIZE 1000": "250-SIZE 1000\r\n250-8BITMIME\r\n", "8-bit, no 8BITMIME": ""} {
		relay, saw := scriptedRelay(t, relayScript{ehlo: ehlo})
		s := &smarthost{addr: relay, host: "localhost", me: "example.org"}
		if st, _ := s.send(cfg, "example.net", draftMsg(t, a, body, 1).entries); st[0] != store.Refused || mailLine(saw) != "" {
			t.Errorf("%s, cleartext on loopback: %v, MAIL %q; want refused", name, st[0], mailLine(saw))
		}
	}
	asRemote(t)
	relay, saw := scriptedRelay(t, relayScript{ehlo: "250-SIZE 1000\r\n250-8BITMIME\r\n"})
	s := &smarthost{addr: relay, host: "127.0.0.1", me: "example.org"}
	if st, _ := s.send(cfg, "example.net", draftMsg(t, a, body, 1).entries); st[0] != store.NoServer || mailLine(saw) != "" {
		t.Errorf("over SIZE 1000, cleartext: %v, MAIL %q", st[0], mailLine(saw))
	}
	relay, saw = scriptedRelay(t, relayScript{ehlo: "250-SIZE 100000\r\n250-8BITMIME\r\n"})
	s = &smarthost{addr: relay, host: "127.0.0.1", me: "example.org"}
	l := draftMsg(t, a, body, 1)
	if st, _ := s.send(cfg, "example.net", l.entries); st[0] != store.SMTP ||
		mailLine(saw) != fmt.Sprintf("MAIL FROM:<alice@example.org> BODY=8BITMIME SIZE=%d", l.msg.size) {
		t.Errorf("SIZE 100000 and 8BITMIME offered: %v, MAIL %q", st[0], mailLine(saw))
	}
	relay, saw = scriptedRelay(t, relayScript{})
	s = &smarthost{addr: relay, host: "127.0.0.1", me: "example.org"}
	if st, _ := s.send(cfg, "example.net", draftMsg(t, a, body, 1).entries); st[0] != store.NoServer || mailLine(saw) != "" {
		t.Errorf("8-bit, no 8BITMIME, cleartext: %v, MAIL %q", st[0], mailLine(saw))
	}
	cert, pool := selfSigned(t, "relay.test")
	tcfg := relayConfig(5 * time.Second)
	tcfg.loc = &locate.Locator{TLS: tlsconf.NewClient(pool, nil, nil)}
	for name, ehlo := range map[string]string{"over SIZE 1000": "250-STARTTLS\r\n250-SIZE 1000\r\n250-8BITMIME\r\n", "8-bit, no 8BITMIME": "250-STARTTLS\r\n"} {
		relay, saw = scriptedRelay(t, relayScript{cert: &cert, ehlo: ehlo})
		s = &smarthost{addr: relay, host: "relay.test", me: "example.org"}
		if st, _ := s.send(tcfg, "example.net", draftMsg(t, a, body, 1).entries); st[0] != store.Refused || mailLine(saw) != "" {
			t.Errorf("%s, verified TLS: %v, MAIL %q", name, st[0], mailLine(saw))
		}
	}
}

// TestSmarthostEHLO502 (third review of issue 20): a relay that answers
// EHLO with 502 is greeted "HELO me", never go-smtp's "HELO localhost",
// and an 8-bit message it therefore cannot take over cleartext from
// another host waits (noserver) instead of being refused for good.
func TestSmarthostEHLO502(t *testing.T) {
	asRemote(t)
	relay, saw := scriptedRelay(t, relayScript{ehloReply: "502 5.5.2 EHLO not implemented\r\n"})
	a, l := queued(t, 1)
	s := &smarthost{addr: relay, host: "127.0.0.1", me: "mail.example.org"}
	if st, _ := s.send(relayConfig(5*time.Second), "example.net", l.entries); st[0] != store.SMTP {
		t.Errorf("7-bit message, relay without EHLO: %v", st[0])
	}
	l8 := draftMsg(t, a, "Subject: caf\xc3\xa9\r\n\r\nd\xc3\xa9j\xc3\xa0 vu\r\n", 1)
	if st, _ := s.send(relayConfig(5*time.Second), "example.net", l8.entries); st[0] != store.NoServer {
		t.Errorf("8-bit message, 502 to EHLO over cleartext: %v, want noserver", st[0])
	}
	helos := 0
	lines, _, _ := saw.get()
	for _, x := range lines {
		if strings.HasPrefix(x, "HELO") || strings.HasPrefix(x, "EHLO") {
			helos++
			if x != "EHLO mail.example.org" && x != "HELO mail.example.org" {
				t.Errorf("relay was greeted %q", x)
			}
		}
	}
	if helos < 4 {
		t.Errorf("%d greetings seen, want an EHLO and a HELO per connection", helos)
	}
}

// TestSmarthostMAILAuthNeeded (third review of issue 20): a relay that
// answers MAIL with 530 or an authentication code (5.7.0, 5.7.8-5.7.11)
// refuses the session, not the message: noserver, and the rest of the
// batch waits. Another 5xx to MAIL refuses the message, 5.7.1 included
// with or without smarthostuser (fourth review: "Sender address
// rejected" is one sender's).
func TestSmarthostMAILAuthNeeded(t *testing.T) {
	mailRelay := func(reply string) string {
		relay, _ := scriptedRelay(t, relayScript{ehlo: "250-AUTH PLAIN\r\n250-8BITMIME\r\n", auth: "235 2.7.0 ok\r\n",
			mail: func(string) string { return reply }})
		return relay
	}
	for _, c := range []struct {
		reply   string
		user    string
		want    store.Notification
		session bool
	}{
		{"530 5.7.0 Authentication required\r\n", "", store.NoServer, true},
		{"530 Authentication required\r\n", "u", store.NoServer, true},
		{"530 5.7.1 Client was not authenticated\r\n", "", store.NoServer, true},
		{"554 5.7.8 Authentication credentials invalid\r\n", "", store.NoServer, true},
		{"550 5.7.1 Sender address rejected: Access denied\r\n", "", store.Refused, false},
		{"550 5.7.1 Sender refused\r\n", "u", store.Refused, false},
		{"553 5.1.8 Sender domain does not exist\r\n", "", store.Refused, false},
	} {
		_, l := queued(t, 1)
		s := &smarthost{addr: mailRelay(c.reply), host: "127.0.0.1", me: "example.org", user: c.user, pass: "p"}
		st, session := s.send(relayConfig(5*time.Second), "example.net", l.entries)
		if st[0] != c.want || session != c.session {
			t.Errorf("MAIL %q (smarthostuser %q): %v, session %v; want %v, %v", strings.TrimSpace(c.reply), c.user, st[0], session, c.want, c.session)
		}
	}
}

// TestSmarthostBadSetting: a smarthost setting whose port is missing, not
// a number or out of range is refused when the settings load.
func TestSmarthostBadSetting(t *testing.T) {
	for v, good := range map[string]bool{"relay.example:": false, "relay.example:smtpx": false, "relay.example:99999": false,
		"relay.example:0": false, ":25": false, "relay.example": true, "relay.example:587": true, "[::1]:25": true, "[::1]": true} {
		dir := t.TempDir()
		os.WriteFile(dir+"/smarthost", []byte(v+"\n"), 0o644)
		os.WriteFile(dir+"/me", []byte("example.org\n"), 0o644)
		_, err := loadSmarthost(conf.Dir(dir))
		if (err == nil) != good {
			t.Errorf("%q: %v", v, err)
		}
	}
}
