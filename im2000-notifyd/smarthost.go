package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"im2000/lib/addr"
	"im2000/lib/conf"
	"im2000/lib/store"
	"im2000/lib/tlsconf"
	"im2000/lib/trace"
)

// The outbound hand-off (issue 20, DESIGN.md section 7): a recipient whose
// domain exists but publishes no IM2000 service (noservice) is handed to
// the SMTP relay of the smarthost setting, when there is one, instead of
// waiting for an agent that will not come. One SMTP transaction per
// message and destination domain (a batch is one domain), with every such
// recipient of the message. A recipient the relay took is recorded as
// smtp: final, no more notifications, and MSOAP Track says silenced
// (delivered); the relay's temporary refusals and a relay that cannot be
// reached are noserver, retried on the queue's schedule; a permanent
// refusal is refused. Still no bounces: the sender reads the status.
// go-smtp's client carries the protocol (STARTTLS, AUTH, PIPELINING,
// dot-stuffing), as its server does for im2000-smtpd and im2000-gatewayd.

// smarthost is the relay and how to talk to it.
type smarthost struct {
	addr       string // host:port
	host       string // for TLS and the status
	me         string // HELO
	user, pass string // AUTH PLAIN when user is set, over TLS (or loopback) only
}

// loadSmarthost reads smarthost (host or host:port, port 25 by default),
// smarthostuser and smarthostpassword. No smarthost: nil.
func loadSmarthost(d conf.Dir) (*smarthost, error) {
	where, err := d.Str("smarthost")
	if err != nil || where == "" {
		return nil, err
	}
	host, port, err := net.SplitHostPort(where)
	if err != nil {
		host, port = where, "25"
	}
	if host == "" {
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

// handOff hands the batch (one destination domain) to the smarthost: one
// outcome per entry, and where it went.
func (s *smarthost) handOff(cfg *config, domain string, batch []*entry) ([]outcome, string) {
	out := make([]outcome, len(batch))
	at := map[*entry]int{}
	for i, e := range batch {
		at[e] = i
	}
	for _, g := range byMessage(batch) {
		states := s.send(cfg, domain, g)
		for i, e := range g {
			out[at[e]] = outcome{state: states[i]}
		}
	}
	return out, "smtp:" + s.host
}

// send makes one SMTP transaction of one message's recipients at domain.
func (s *smarthost) send(cfg *config, domain string, g []*entry) []store.Notification {
	states := make([]store.Notification, len(g))
	set := func(st store.Notification) []store.Notification {
		for i := range states {
			states[i] = st
		}
		return states
	}
	m := g[0].msg
	where := fmt.Sprintf("%s/%s to %s via SMTP %s", m.acct.Name, m.id, domain, s.addr)
	msg, err := m.acct.Open(m.id)
	if err != nil {
		logSmarthostFailed(where, err.Error())
		return set(store.NoServer) // the check decides next time
	}
	defer msg.Close()
	// The timeout for the session, and the message's size at 64 KiB/s:
	// a relay that trickles holds this worker, and only it, that long.
	d := cfg.timeout + time.Duration(msg.Size()/(64<<10))*time.Second
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	c, err := s.dial(ctx, cfg)
	if err != nil {
		logSmarthostFailed(where, trace.Escape(err.Error()))
		return set(classify(err))
	}
	defer c.Close()
	if err := c.Mail(m.sender, nil); err != nil {
		logSmarthostFailed(where, "MAIL: "+trace.Escape(err.Error()))
		return set(classify(err))
	}
	taken := 0
	for i, e := range g {
		// Quoted again as RFC 5321 wants: a quoted local part holding
		// "> ORCPT=..." must not become ESMTP parameters of the RCPT.
		if err := c.Rcpt(addr.Mailbox{Local: e.local, Domain: domain}.String(), nil); err != nil {
			logSmarthostFailed(where, "RCPT "+trace.Escape(e.local)+"@"+domain+": "+trace.Escape(err.Error()))
			states[i] = classify(err)
			continue
		}
		states[i] = store.SMTP
		taken++
	}
	if taken == 0 {
		c.Reset()
		return states
	}
	w, err := c.Data()
	if err == nil {
		_, err = io.Copy(w, msg.Body())
		if cerr := w.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		logSmarthostFailed(where, "DATA: "+trace.Escape(err.Error()))
		st := classify(err)
		for i := range states {
			if states[i] == store.SMTP {
				states[i] = st
			}
		}
		return states
	}
	c.Quit()
	return states
}

// dial opens a session with the relay: STARTTLS when it offers it
// (go-smtp's client greets with EHLO localhost before it; it starts TLS
// only from its constructor), else cleartext on a second connection, then
// AUTH PLAIN when smarthostuser is set, never over cleartext but to a
// loopback address. Every read of the session is bounded (relayConn) and
// no deadline go-smtp sets outlasts the session's.
//
// TLS is remembered as for the agents (DESIGN-NOTES.md, "TLS: clients"):
// a smarthost once reached over verified TLS, or named in tlsrequire, that
// offers no STARTTLS is refused as a downgrade (tlsconf.ErrDowngrade,
// recorded as tlsdowngrade) instead of being given the mail in clear.
func (s *smarthost) dial(ctx context.Context, cfg *config) (*smtp.Client, error) {
	var dialer net.Dialer
	deadline, _ := ctx.Deadline()
	connect := func() (net.Conn, error) {
		conn, err := dialer.DialContext(ctx, "tcp", s.addr)
		if err != nil {
			return nil, err
		}
		conn.SetDeadline(deadline)
		return &relayConn{Conn: conn, deadline: deadline}, nil
	}
	conn, err := connect()
	if err != nil {
		return nil, err
	}
	var tc *tls.Config
	var tcl *tlsconf.Client
	if cfg.loc != nil && cfg.loc.TLS != nil {
		tcl = cfg.loc.TLS
		tc = tcl.Config(s.host)
	} else {
		tc = &tls.Config{ServerName: s.host, MinVersion: tls.VersionTLS12}
	}
	secure := true
	c, err := smtp.NewClientStartTLS(conn, tc)
	if err != nil && strings.Contains(err.Error(), "support STARTTLS") {
		if why, required := tcl.Required("smtp", s.host); required {
			return nil, fmt.Errorf("%w: %s offers no STARTTLS (%s)", tlsconf.ErrDowngrade, s.host, why)
		}
		secure = false
		if conn, err = connect(); err != nil {
			return nil, err
		}
		c = smtp.NewClient(conn)
		err = c.Hello(s.me)
	}
	if err != nil {
		return nil, err
	}
	c.CommandTimeout, c.SubmissionTimeout = cfg.timeout, time.Until(deadline)
	if secure {
		if err := tcl.Reached("smtp", s.host); err != nil {
			logTLSNotRemembered(s.host, err)
		}
	}
	if s.user == "" {
		return c, nil
	}
	if ip, err := netip.ParseAddr(s.host); !secure && (err != nil || !ip.IsLoopback()) && s.host != "localhost" {
		c.Close()
		return nil, errNoTLS
	}
	if err := c.Auth(sasl.NewPlainClient("", s.user, s.pass)); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// classify: the relay's 5xx is permanent (refused); anything else, its
// 4xx, a broken connection, a timeout, is temporary (noserver), retried.
func classify(err error) store.Notification {
	switch {
	case errors.Is(err, tlsconf.ErrDowngrade):
		return store.TLSDowngrade
	case tlsconf.CertError(err):
		return store.TLSBadCert
	}
	var se *smtp.SMTPError
	if errors.As(err, &se) && se.Code >= 500 && se.Code < 600 && !strings.Contains(err.Error(), "STARTTLS") {
		return store.Refused
	}
	return store.NoServer
}
