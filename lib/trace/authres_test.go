package trace

import (
	"strings"
	"testing"
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
