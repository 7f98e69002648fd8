package main

import (
	"mime"
	"strings"
	"testing"

	"im2000/lib/addr"
	"im2000/lib/agent"
	"im2000/lib/msgid"
	"im2000/lib/policy"
	"im2000/lib/wire"
)

// TestNoticeText: a notice's allow line, when it has one, allows exactly
// the held sender; a sender that needs escaping gets none (the notice
// points to the key); no encoded word from a sender reaches the Subject
// (one decoded to a bidi override).
func TestNoticeText(t *testing.T) {
	for _, c := range []struct {
		sender    string
		allowLine bool
	}{
		{"alice@example.org", true},
		{`"a\\b"@evil.example`, true}, // trace.Escape made it allow `"a\\\\b"`
		{`"x =?utf-8?q?=E2=80=AE?= y"@evil.example`, false},
		{"=?utf-8?q?=E2=80=AE?=@evil.example", true},
		{"\u00a0ceo@evil.example", false},
	} {
		m, err := addr.Parse(c.sender)
		if err != nil {
			t.Fatalf("%q: %v", c.sender, err)
		}
		e := agent.Entry{Name: strings.Repeat("ab", 16)}
		text := string(noticeText(e, m, "bob", "me.example", "/x/senderpolicy"))
		var allow, subj string
		for _, l := range strings.Split(text, "\r\n") {
			if a, ok := strings.CutPrefix(l, "  allow "); ok {
				allow = a
			}
			if s, ok := strings.CutPrefix(l, "Subject: "); ok {
				subj = s
			}
		}
		if c.allowLine {
			p, err := policy.Parse("p", strings.NewReader("default hold\nallow "+allow+"\n"))
			if err != nil || p.Decide(m).Verdict != policy.Fetch {
				t.Errorf("%q: the notice's line %q does not allow it (%v)", c.sender, allow, err)
			}
		} else if allow != "ADDRESS" || !strings.Contains(text, e.Name) {
			t.Errorf("%q: the notice's allow line %q", c.sender, allow)
		}
		dec, err := new(mime.WordDecoder).DecodeHeader(subj)
		if err != nil || dec != subj || strings.Contains(subj, "=?") {
			t.Errorf("%q: Subject %q decodes to %q (%v)", c.sender, subj, dec, err)
		}
		for _, r := range subj {
			if r < ' ' || r > '~' {
				t.Errorf("%q: Subject %q has %U", c.sender, subj, r)
			}
		}
	}
}

// TestNoticeUIDL: notices of two held entries of one message id (two
// locations: one has no location of its own once copied) have UIDLs of
// their own, the same at every login, and not the held entry's key.
func TestNoticeUIDL(t *testing.T) {
	var a, b agent.Entry
	a.N.Notification.ID = msgid.ID{7}
	a.N.Notification.StoreClear = wire.ServiceLocation{Domain: wire.DomainName{"unknown", "example"}}
	b.N = a.N
	b.N.Notification.StoreClear = wire.ServiceLocation{Domain: wire.DomainName{"other", "example"}}
	a.Name, b.Name = agent.Key(&a.N), agent.Key(&b.N)
	na, nb := noticeEntry(a, "notice:"+a.Name), noticeEntry(b, "notice:"+b.Name)
	ua, ub := agent.Key(&na.N), agent.Key(&nb.N)
	if ua == ub || ua == a.Name || ub == b.Name {
		t.Errorf("UIDLs %s %s for entries %s %s", ua, ub, a.Name, b.Name)
	}
	if again := noticeEntry(a, "notice:"+a.Name); agent.Key(&again.N) != ua || again.Name != na.Name {
		t.Error("a notice's UIDL changes between logins")
	}
	if na.N.Notification.StoreClear.String() != (wire.ServiceLocation{}).String() || na.N.Notification.StoreSSL != nil {
		t.Errorf("a notice has a location: %s", na.N.Notification.StoreClear)
	}
}
