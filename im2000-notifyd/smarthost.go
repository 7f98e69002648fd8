package main

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/emersion/go-smtp"

	"im2000/lib/conf"
	"im2000/lib/store"
	"im2000/lib/tlsconf"
)

// The outbound hand-off (issue 20, DESIGN.md section 7): a recipient whose
// domain exists but publishes no IM2000 service (noservice) is handed to
// the SMTP relay of the smarthost setting, when there is one, instead of
// waiting for an agent that will not come. One SMTP transaction per
// message and destination domain (a batch is one domain), with every such
// recipient of the message. A recipient the relay took is recorded as
// smtp the moment the relay answers the final dot with 250 (final, no more
// notifications; MSOAP Track says silenced), with one record of the relay
// and its reply for the transaction (store.HandOff). What the relay says
// to the session (greeting, EHLO, STARTTLS, AUTH, a 4xx to MAIL, a 530 or
// authentication code to MAIL: authNeeded) or a relay that cannot be
// reached is noserver, retried on the queue's schedule, and puts the rest
// of the batch back untried; only its 5xx to a recipient's RCPT (that
// recipient) or to MAIL or DATA (that message) is refused, and SIZE or
// 8BITMIME only when its EHLO came inside verified TLS or from a loopback
// address (refuse).
// Still no bounces: the sender reads the status. go-smtp's client carries
// the protocol (STARTTLS, AUTH, PIPELINING, dot-stuffing), as its server
// does for im2000-smtpd and im2000-gatewayd.

// smarthost is the relay and how to talk to it.
type smarthost struct {
	addr       string // host:port
	host       string // for TLS and the status
	me         string // EHLO
	user, pass string // AUTH PLAIN when user is set, over TLS (or loopback) only
}

// stopping is set by SIGTERM: a batch of hand-offs stops after the message
// in progress and puts the rest back untried, so that notifyd waits for
// one SMTP session, not for a batch of up to batchMax of them.
var smarthostStop atomic.Bool

// loadSmarthost reads smarthost (host or host:port, port 25 by default,
// a port a number from 1 to 65535), smarthostuser and smarthostpassword.
// No smarthost: nil.
func loadSmarthost(d conf.Dir) (*smarthost, error) {
	where, err := d.Str("smarthost")
	if err != nil || where == "" {
		return nil, err
	}
	host, port, err := net.SplitHostPort(where)
	if err != nil {
		if strings.HasSuffix(where, ":") && !strings.HasSuffix(where, "::") {
			return nil, fmt.Errorf("%s: %q names no port: write host or host:port", d.Path("smarthost"), where)
		}
		host, port = strings.TrimSuffix(strings.TrimPrefix(where, "["), "]"), "25"
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != port {
		return nil, fmt.Errorf("%s: %q: the port must be a number from 1 to 65535: write host or host:port", d.Path("smarthost"), where)
	}
	if host == "" || strings.ContainsAny(host, " \t/@") {
		return nil, fmt.Errorf("%s: %q names no host: write host or host:port", d.Path("smarthost"), where)
	}
	s := &smarthost{addr: net.JoinHostPort(host, port), host: host}
	if s.me, err = d.Me(); err != nil {
		return nil, err
	}
	if s.user, err = d.Str("smarthostuser"); err != nil {
		return nil, err
	}
	if s.pass, err = d.Str("smarthostpassword"); err != nil {
		return nil, err
	}
	return s, nil
}

// errNoTLS is AUTH refused by this side: the password would cross in clear.
var errNoTLS = errors.New("the smarthost offers no STARTTLS, and AUTH is not sent in cleartext but to a loopback address")

// handOff hands the batch (one destination domain) to the smarthost, one
// message at a time: one outcome per entry, and where it went. After a
// session that failed (the relay unreachable, silent, or refusing the
// session), the messages not yet tried are put back as noserver without a
// connection each: a tarpit costs one timeout per batch, not per message.
func (s *smarthost) handOff(cfg *config, domain string, batch []*entry) ([]outcome, string) {
	out := make([]outcome, len(batch))
	at := map[*entry]int{}
	for i, e := range batch {
		at[e] = i
	}
	var failed store.Notification
	left := 0
	for _, g := range byMessage(batch) {
		switch {
		case smarthostStop.Load():
			for _, e := range g {
				out[at[e]] = outcome{untried: true}
			}
			continue
		case failed != store.Unprocessed:
			for _, e := range g {
				out[at[e]] = outcome{state: failed}
			}
			left++
			continue
		}
		states, session := s.send(cfg, domain, g)
		for i, e := range g {
			out[at[e]] = outcome{state: states[i]}
		}
		if session {
			failed = states[0]
		}
	}
	if left > 0 {
		logSmarthostPutBack(domain, s.addr, left, failed)
	}
	return out, "smtp:" + s.host
}

// sessionState is what a failed session means for every recipient of the
// message: temporary (noserver), or the TLS states; never refused, since
// a relay that turns the session away (a 554 greeting, a 535 to AUTH after
// a password change) says nothing about the recipients. Postfix defers on
// these too.
func sessionState(err error) store.Notification {
	switch {
	case errors.Is(err, tlsconf.ErrDowngrade):
		return store.TLSDowngrade
	case tlsconf.CertError(err):
		return store.TLSBadCert
	}
	return store.NoServer
}

// replyState is what the relay's reply to MAIL, RCPT or DATA means: its
// 5xx is permanent (refused); its 4xx is temporary (noserver). session is
// true for anything that is not a reply (a broken connection, a timeout):
// the session is over.
func replyState(err error) (st store.Notification, session bool) {
	var se *smtp.SMTPError
	if !errors.As(err, &se) {
		return sessionState(err), true
	}
	if se.Code >= 500 && se.Code < 600 {
		return store.Refused, false
	}
	return store.NoServer, false
}
