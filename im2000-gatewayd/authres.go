package main

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"blitiri.com.ar/go/spf"
	"github.com/emersion/go-msgauth/authres"
	"github.com/emersion/go-msgauth/dkim"
)

// What SMTP said about the sender is checked with maintained libraries:
// blitiri.com.ar/go/spf (RFC 7208, with its lookup limits) and
// go-msgauth's dkim (RFC 6376) and authres (RFC 8601). Writing either
// check here would be a second, unfuzzed implementation of a standard
// whose corner cases (macros, void lookups, canonicalization) are where
// the forgeries live.

// resolver asks the resolvers setting's servers (host:port, in turn), or
// the system's when there is none, and bounds every lookup by the timeout
// setting, so a slow DNS delays only its own session's answer.
type resolver struct {
	net     *net.Resolver
	timeout time.Duration
}

func newResolver(servers []string, timeout time.Duration) *resolver {
	r := &resolver{net: net.DefaultResolver, timeout: timeout}
	if len(servers) > 0 {
		var next atomic.Uint32
		r.net = &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			s := servers[int(next.Add(1))%len(servers)]
			var d net.Dialer
			return d.DialContext(ctx, network, s)
		}}
	}
	return r
}

// maxSignatures is the most DKIM signatures verified in one message: each
// costs a DNS lookup and a hash of the body, and a sender could put
// hundreds in a header.
const maxSignatures = 5

// checkSPF is the SPF result for the envelope sender (or, with the null
// sender, the HELO name) from the client's address.
func (c *config) checkSPF(ip netip.Addr, helo, sender string) *authres.SPFResult {
	ctx, cancel := context.WithTimeout(context.Background(), 2*c.dns.timeout)
	defer cancel()
	res, _ := spf.CheckHostWithSender(net.IP(ip.AsSlice()), helo, sender, spf.WithResolver(c.dns.net), spf.WithContext(ctx))
	from := sender
	if from == "" {
		from = "postmaster@" + helo
	}
	return &authres.SPFResult{Value: authres.ResultValue(res), From: clean(from), Helo: clean(helo)}
}

// checkDKIM verifies the message's DKIM signatures (at most
// maxSignatures): one result each, or "none" without any.
func (c *config) checkDKIM(msg io.Reader) []authres.Result {
	lookup := func(name string) ([]string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), c.dns.timeout)
		defer cancel()
		return c.dns.net.LookupTXT(ctx, name)
	}
	verifs, err := dkim.VerifyWithOptions(msg, &dkim.VerifyOptions{LookupTXT: lookup, MaxVerifications: maxSignatures})
	if err != nil && !errors.Is(err, dkim.ErrTooManySignatures) {
		return []authres.Result{&authres.DKIMResult{Value: authres.ResultPermError, Reason: "unreadable message"}}
	}
	if len(verifs) == 0 {
		return []authres.Result{&authres.DKIMResult{Value: authres.ResultNone}}
	}
	var out []authres.Result
	for _, v := range verifs {
		r := &authres.DKIMResult{Value: authres.ResultPass, Domain: clean(v.Domain), Identifier: clean(v.Identifier)}
		switch {
		case v.Err == nil:
		case dkim.IsTempFail(v.Err):
			r.Value = authres.ResultTempError
		case dkim.IsPermFail(v.Err):
			r.Value = authres.ResultPermError
		default:
			r.Value = authres.ResultFail
		}
		if v.Err != nil {
			r.Reason = clean(v.Err.Error())
		}
		out = append(out, r)
	}
	return out
}

// clean keeps what a sender chose (a HELO name, a signature's d= and i=)
// from breaking the header field it goes into: printable ASCII without
// the characters RFC 8601's syntax gives a meaning, at most 255 octets.
func clean(s string) string {
	s = strings.Map(func(r rune) rune {
		if r <= ' ' || r >= 127 || strings.ContainsRune(`;()"\`, r) {
			return -1
		}
		return r
	}, s)
	if len(s) > 255 {
		s = s[:255]
	}
	return s
}

// authResults is the Authentication-Results field's value, authserv-id me.
func (c *config) authResults(results []authres.Result) string {
	return authres.Format(c.me, results)
}
