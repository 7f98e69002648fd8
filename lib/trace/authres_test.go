package trace

import (
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/emersion/go-msgauth/authres"
)

// TestStampAuthResults: a reader removes every Authentication-Results
// field naming its own host (RFC 8601 section 5), folded or not, with its
// continuation lines; others stay. From a trusted gateway, the gateway's
// own field (the third, under its Return-Path and Received) stays, and a
// later one naming the gateway goes. Anyone else's layout keeps nothing
// naming this host.
func TestStampAuthResults(t *testing.T) {
	const gwFields = "Return-Path: <carol@smtp.example>\r\nReceived: from mx.smtp.example ([192.0.2.1])\r\n\tby gw.example.org (im2000-gatewayd) with ESMTP id X;\r\n\tThu, 1 Jan 1970 00:00:00 +0000\r\n"
	const gwAR = "Authentication-Results: gw.example.org;\r\n\tspf=pass smtp.mailfrom=carol@smtp.example\r\n"
	cases := []struct {
		msg     string
		gateway bool
		keep    []string // substrings that stay
		gone    []string // substrings that go
	}{
		{"Authentication-Results: example.org; dkim=pass header.d=bank.example\r\nSubject: x\r\n\r\nb\r\n", false,
			[]string{"Subject: x"}, []string{"bank.example"}},
		{"Subject: x\r\nAuthentication-Results:\r\n (c) \"EXAMPLE.ORG\";\r\n\tdkim=pass header.d=bank.example\r\nAuthentication-Results: other.example; spf=fail\r\n\r\nb\r\n", false,
			[]string{"Authentication-Results: other.example; spf=fail\r\n"}, []string{"bank.example", "EXAMPLE.ORG"}},
		{"Authentication-Results: example.org.evil; none\r\n\r\n", false, []string{"example.org.evil"}, nil},
		{"Subject: x\r\n\r\nAuthentication-Results: example.org; dkim=pass\r\n", false, []string{"\r\n\r\nAuthentication-Results: example.org; dkim=pass"}, nil},
		{gwFields + gwAR + "Authentication-Results: gw.example.org; dkim=pass header.d=bank.example\r\nAuthentication-Results: example.org; dkim=pass header.d=bank2.example\r\nSubject: x\r\n\r\nb\r\n", true,
			[]string{gwAR, "Subject: x"}, []string{"bank.example", "bank2.example"}},
		// The gateway on the reader's own host: its field names the reader.
		{gwFields + strings.Replace(gwAR, "gw.example.org", "example.org", 1) + "\r\nb\r\n", true, []string{"Authentication-Results: example.org;\r\n\tspf=pass"}, nil},
		// Not the gateway's layout: nothing naming this host stays.
		{"Return-Path: <carol@smtp.example>\r\nSubject: x\r\nAuthentication-Results: example.org; dkim=pass header.d=bank.example\r\n\r\nb\r\n", true, nil, []string{"bank.example"}},
		{gwFields + "Authentication-Results: example.org; dkim=pass header.d=bank.example\r\n\r\nb\r\n", false, nil, []string{"bank.example"}},
		// The hostile review's forgeries (issue 20): comments nest and hold
		// quoted-pairs, a final dot names the same host, and a field that
		// cannot be read claims this host; under a gateway's field too.
		{gwFields + gwAR + "Authentication-Results: (a (b) c) example.org; dkim=pass header.d=bank.example\r\n" +
			"Authentication-Results: (\\)) example.org; spf=pass smtp.mailfrom=ceo@bank2.example\r\n" +
			"Authentication-Results: Example.Org.; dkim=pass header.d=bank3.example\r\n" +
			"Authentication-Results: (checked (by) gw.example.org.; dkim=pass header.d=bank4.example\r\n" +
			"Authentication-Results: (x) gw.example.org.; dkim=pass header.d=bank5.example\r\nSubject: x\r\n\r\nb\r\n", true,
			[]string{gwAR, "Subject: x"}, []string{"bank.example", "bank2.example", "bank3.example", "bank4.example", "bank5.example"}},
		{"Authentication-Results: (checked (by) us) example.org; dkim=pass header.d=bank.example\r\nAuthentication-Results: other.example (\\)) ; none\r\n\r\nb\r\n", false,
			[]string{"other.example"}, []string{"bank.example"}},
	}
	for _, c := range cases {
		st := stamp("store.example.org")
		st.By, st.Gateway = "example.org", c.gateway
		out, err := st.Apply([]byte(c.msg), false)
		if err != nil {
			t.Fatalf("%q: %v", c.msg, err)
		}
		for _, k := range c.keep {
			if !strings.Contains(string(out), k) {
				t.Errorf("%q: lost %q:\n%s", c.msg, k, out)
			}
		}
		for _, g := range c.gone {
			if strings.Contains(string(out), g) {
				t.Errorf("%q: kept %q:\n%s", c.msg, g, out)
			}
		}
	}
}

// TestClaimsUnicodeSpace (second hostile review of issue 20): an
// authserv-id ended by a non-ASCII space is this host's to go-msgauth's
// authres.Parse and any Unicode-aware reader, so Claims must say so: all
// 19 Unicode spaces above U+007F, right after the id or with more after
// them. The reader removes such a field.
func TestClaimsUnicodeSpace(t *testing.T) {
	const host = "example.org"
	spaces := 0
	for r := rune(0x80); r <= 0x3000; r++ {
		if !unicode.IsSpace(r) {
			continue
		}
		spaces++
		for _, v := range []string{
			" " + host + string(r) + "; dkim=pass header.d=paypal.com",
			" " + host + string(r) + "1; dkim=pass header.d=paypal.com",
			" \"" + host + "\"" + string(r) + "; dkim=pass header.d=paypal.com",
			" " + string(r) + host + "; dkim=pass header.d=paypal.com",
		} {
			if !Claims(v, host) {
				id, _, err := authres.Parse(v)
				t.Errorf("U+%04X: Claims(%q) is false; authres.Parse reads id %q (%v)", r, v, id, err)
			}
		}
	}
	if spaces != 19 {
		t.Errorf("%d non-ASCII spaces, want 19", spaces)
	}
	if !Claims(" other.example; none", "other.example") || Claims(" other.example; none", host) {
		t.Error("an ASCII id is read wrongly")
	}
	msg := "Authentication-Results: example.org\u00a0; dkim=pass header.d=paypal.com\r\nSubject: x\r\n\r\nb\r\n"
	out, err := Stamp{By: host, Prog: "im2000-fetch", At: time.Now()}.Apply([]byte(msg), false)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "paypal.com") {
		t.Errorf("reader %s kept the forged field: %q", host, out)
	}
}
