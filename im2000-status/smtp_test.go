package main

import (
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"

	"im2000/lib/addr"
	"im2000/lib/store"
)

// TestViaReplyEscaped (third review of issue 20): the relay's reply to
// the final dot is its own words; --json printed its C1 controls and bidi
// overrides raw (U+009B is a CSI to a terminal), while the row escaped
// them. Both now carry trace.Escape's form, escaped once.
func TestViaReplyEscaped(t *testing.T) {
	s, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	a, err := s.Account("alice")
	if err != nil {
		t.Fatal(err)
	}
	d, err := a.NewDraft(store.Submission{Sender: addr.Mailbox{Local: "alice", Domain: "example.org"}, Lifetime: time.Hour,
		Recipients: []addr.Mailbox{{Local: "bob", Domain: "example.net"}}}, store.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(d, "Subject: x\r\n\r\nx\r\n")
	env, err := d.Commit()
	if err != nil {
		t.Fatal(err)
	}
	m, err := a.Open(env.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	at := time.Unix(time.Now().Unix(), 0)
	reply := "2.0.0 ok\n\x1b]0;pwned\x07\t\u009b31m\u202eevil\\" + strings.Repeat("\xff", 3)
	if err := m.AddHandOff(store.HandOff{At: at, Domain: "example.net", Relay: "relay.test:25", Reply: reply}); err != nil {
		t.Fatal(err)
	}
	st := &store.Status{Recipients: []store.RecipientStatus{{Notification: store.SMTP, Last: at}}}
	v := &messageView{Recipients: []recipientView{{Address: "bob@example.net", Notification: store.SMTP.String()}}}
	viaSMTP(a, env, st, v)
	j, err := json.Marshal(v.Recipients[0])
	if err != nil {
		t.Fatal(err)
	}
	var back recipientView
	json.Unmarshal(j, &back)
	for _, bad := range []string{"\u009b", "\u202e", "\x1b", "\x07", "\n", "\xff"} {
		if strings.Contains(back.ViaReply, bad) || strings.Contains(string(j), bad) {
			t.Errorf("JSON via_reply holds %q raw: %s", bad, j)
		}
	}
	const want = `2.0.0 ok\n\x1b]0;pwned\a\t\u009b31m\u202eevil\\\xff\xff\xff`
	if back.ViaReply != want {
		t.Errorf("via_reply %q, want %q", back.ViaReply, want)
	}
	if row := v.Recipients[0].notification(); row != "handed to SMTP via relay.test:25 ("+want+")" {
		t.Errorf("row %q: escaped other than once", row)
	}
}
