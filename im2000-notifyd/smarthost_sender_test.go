package main

import (
	"io"
	"strings"
	"testing"
	"time"

	"im2000/lib/addr"
	"im2000/lib/store"
)

// TestSmarthostSenderRefused (fourth hostile review of issue 20): a relay
// that refuses one sender at MAIL with 554 5.7.1 (postfix's "Sender
// address rejected"), no smarthostuser set, refuses that message only.
// Taken for "AUTH needed" it put the whole batch back at every round, and
// alice's message, which the relay would take, never went.
func TestSmarthostSenderRefused(t *testing.T) {
	relay, saw := scriptedRelay(t, relayScript{ehlo: "250-8BITMIME\r\n", mail: func(line string) string {
		if strings.Contains(line, "mallory") {
			return "554 5.7.1 <mallory@example.org>: Sender address rejected: Access denied\r\n"
		}
		return ""
	}})
	a, _ := queued(t, 1)
	mk := func(sender string) loaded {
		from, err := addr.Parse(sender)
		if err != nil {
			t.Fatal(err)
		}
		d, err := a.NewDraft(store.Submission{Sender: from, Lifetime: time.Hour, Recipients: []addr.Mailbox{{Local: "carol", Domain: "example.net"}}}, store.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(d, "Subject: x\r\n\r\nx\r\n")
		env, err := d.Commit()
		if err != nil {
			t.Fatal(err)
		}
		l, ok := loadMessage(a, env.ID, time.Now())
		if !ok {
			t.Fatal("the message did not load")
		}
		for _, e := range l.entries {
			e.msg = l.msg
		}
		return l
	}
	bad, good := mk("mallory@example.org"), mk("alice@example.org")
	batch := append(append([]*entry{}, bad.entries...), good.entries...)
	s := &smarthost{addr: relay, host: "127.0.0.1", me: "example.org"}
	out, _ := s.handOff(relayConfig(5*time.Second), "example.net", batch)
	if out[0].state != store.Refused {
		t.Errorf("mallory's message, sender refused 554 5.7.1: %v, want refused", out[0].state)
	}
	if out[1].state != store.SMTP {
		t.Errorf("alice's message after mallory's was refused: %v, want handed off", out[1].state)
	}
	if _, datas, _ := saw.get(); len(datas) != 1 {
		t.Errorf("the relay saw %d DATA, want 1 (alice's)", len(datas))
	}
}
