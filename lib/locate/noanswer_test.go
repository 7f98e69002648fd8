package locate

import (
	"errors"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"im2000/lib/locate/locatetest"
)

// TestNoAnswerIsNotNoService: ErrNoService (which notifyd hands to its
// smarthost) only when both SRV forms were answered NXDOMAIN or without
// records and the domain is shown to exist; a question of either form, or
// of the domain's existence, that goes unanswered (dropped, SERVFAIL) is
// ErrNoAnswer, and a TLS form with records but no address is ErrNoServer.
// The hostile review's case: a domain that publishes both forms, whose SRV
// questions are dropped, was ErrNoService, and its mail went over SMTP.
func TestNoAnswerIsNotNoService(t *testing.T) {
	dead := closedPort(t)
	srv := func(name string) dnsmessage.Resource { return locatetest.SRV(name, 0, 0, dead, "agent.pub.test.") }
	d := locatetest.StartDNS(t, map[string][]dnsmessage.Resource{
		// publishes both forms
		"pub.test.":                 {locatetest.A("pub.test.")},
		"_rnasp._tcp.pub.test.":     {srv("_rnasp._tcp.pub.test.")},
		"_rnasps._tcp.pub.test.":    {srv("_rnasps._tcp.pub.test.")},
		"agent.pub.test.":           {locatetest.A("agent.pub.test.")},
		"_rnasp._tcp.nodata.test.":  {locatetest.RR("_rnasp._tcp.nodata.test.", &dnsmessage.TXTResource{TXT: []string{"x"}})},
		"_rnasps._tcp.nodata.test.": {locatetest.RR("_rnasps._tcp.nodata.test.", &dnsmessage.TXTResource{TXT: []string{"x"}})},
		// exists, publishes no SRV (NXDOMAIN for both names)
		"plain.test.":     {locatetest.A("plain.test.")},
		"tlsgone.test.":   {locatetest.A("tlsgone.test.")},
		"tlsfail.test.":   {locatetest.A("tlsfail.test.")},
		"clearfail.test.": {locatetest.A("clearfail.test.")},
		"soagone.test.":   {locatetest.A("soagone.test.")},
		// cleartext NODATA, TLS form with a target that has no address
		"_rnasp._tcp.noaddr.test.":  {locatetest.RR("_rnasp._tcp.noaddr.test.", &dnsmessage.TXTResource{TXT: []string{"x"}})},
		"_rnasps._tcp.noaddr.test.": {locatetest.SRV("_rnasps._tcp.noaddr.test.", 0, 0, dead, "nowhere.noaddr.test.")},
		"_rnasp._tcp.tlsgone.test.": {locatetest.RR("_rnasp._tcp.tlsgone.test.", &dnsmessage.TXTResource{TXT: []string{"x"}})},
	})
	d.Ignore("_rnasp._tcp.pub.test.", dnsmessage.TypeSRV)
	d.Ignore("_rnasps._tcp.pub.test.", dnsmessage.TypeSRV)
	d.Ignore("_rnasps._tcp.tlsgone.test.", dnsmessage.TypeSRV) // cleartext NODATA
	d.Ignore("_rnasps._tcp.tlsfail.test.", dnsmessage.TypeSRV) // cleartext NXDOMAIN, the domain exists
	d.ServFail("_rnasp._tcp.clearfail.test.")                  // TLS NXDOMAIN
	for _, ty := range []dnsmessage.Type{dnsmessage.TypeSOA, dnsmessage.TypeA, dnsmessage.TypeAAAA, dnsmessage.TypeMX} {
		d.Ignore("soagone.test.", ty) // both NXDOMAIN, the domain's questions unanswered
	}
	l := &Locator{Resolvers: []string{d.Addr}, Timeout: 300 * time.Millisecond}
	for _, tc := range []struct {
		domain string
		want   error
		why    string
	}{
		{"pub.test", ErrNoAnswer, "both SRV questions dropped"},
		{"tlsgone.test", ErrNoAnswer, "TLS SRV dropped, cleartext NODATA"},
		{"tlsfail.test", ErrNoAnswer, "TLS SRV dropped, cleartext NXDOMAIN, the domain exists"},
		{"clearfail.test", ErrNoAnswer, "TLS NXDOMAIN, cleartext SERVFAIL"},
		{"soagone.test", ErrNoAnswer, "both NXDOMAIN, the domain's own questions dropped"},
		{"noaddr.test", ErrNoServer, "TLS records without an address, cleartext NODATA"},
		{"plain.test", ErrNoService, "both NXDOMAIN, the domain exists"},
		{"nodata.test", ErrNoService, "both NODATA"},
		{"nosuch.test", ErrBadDomain, "both NXDOMAIN, the domain too"},
	} {
		_, err := l.Dial(t.Context(), "rnasp", tc.domain)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s (%s): %v, want %v", tc.domain, tc.why, err, tc.want)
		}
		if tc.want != ErrNoService && errors.Is(err, ErrNoService) {
			t.Errorf("%s (%s): %v is also ErrNoService", tc.domain, tc.why, err)
		}
	}
}
