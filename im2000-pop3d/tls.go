package main

import (
	"bufio"
	"crypto/tls"
	"errors"
	"net"
	"strings"

	"im2000/lib/conf"
	"im2000/lib/session"
	"im2000/lib/tlsconf"
)

// loadTLS reads the certificate and key (tlscert, tlskey). With a certificate the server offers STLS (RFC 2595) and,
// with -tls, speaks TLS from the first byte (port 995 style, RFC 8314).
// Without one, -tls is an error and STLS is not offered.
func loadTLS(d conf.Dir, implicit bool) (*tls.Config, error) {
	cfg, err := tlsconf.ServerConfig(d, logTLS)
	if errors.Is(err, tlsconf.ErrNoCert) && !implicit {
		return nil, nil
	}
	return cfg, err
}

// startTLS runs the server's handshake on the session's connection, bounded
// as a command is (the idle timeout, cut short by the session's lifetime
// and the time it has to log in), and reads and writes through TLS from
// then on. false: the session is over (logged).
func (p *pop) startTLS() bool {
	nc, ok := p.conn.(net.Conn)
	if !ok {
		logNoNetConn(p.peer)
		return false
	}
	deadline, _ := p.limits.Deadline(p.start, p.timeout, false)
	nc.SetDeadline(deadline)
	tc := tls.Server(nc, p.tls)
	if err := tc.Handshake(); err != nil {
		logHandshake(p.peer, err)
		return false
	}
	p.conn, p.r, p.overTLS = tc, bufio.NewReaderSize(tc, 4096), true
	return true
}

// stls answers STLS; false ends the session. Whatever the client sent
// after STLS before the handshake is cleartext that an attacker could
// have put there (RFC 2595 section 4, and the STARTTLS command injection
// of CVE-2011-0411): the session ends rather than read it as if it were
// protected.
func (p *pop) stls() bool {
	switch {
	case p.tls == nil:
		p.reply("-ERR STLS is not offered here: no certificate")
		return true
	case p.overTLS:
		p.reply("-ERR already in TLS")
		return true
	case p.r.Buffered() > 0:
		logSTLSInjection(p.peer)
		p.reply("-ERR nothing may follow STLS before the TLS handshake")
		return false
	}
	p.reply("+OK begin TLS negotiation")
	return p.startTLS()
}

// passwordOK says whether USER, PASS and AUTH may be taken: over TLS,
// from loopback, from a local user on pipes, or where the admin set
// cleartextauth. Otherwise the
// command is refused, logged, and CAPA does not list them.
func (p *pop) passwordOK(verb string) bool {
	if tlsconf.PasswordOK(p.overTLS, session.PeerAddr(p.peer), p.localUser, p.clearAuth) {
		return true
	}
	logCleartext(p.peer, verb)
	p.reply("-ERR [AUTH] passwords are not taken in cleartext here: use STLS first")
	return false
}

// capa is the answer to CAPA before login: STLS while the session is in
// cleartext and a certificate is there; USER and SASL PLAIN only where a
// password may be taken.
func (p *pop) capa() string {
	caps := []string{"+OK capabilities follow"}
	if p.tls != nil && !p.overTLS {
		caps = append(caps, "STLS")
	}
	if tlsconf.PasswordOK(p.overTLS, session.PeerAddr(p.peer), p.localUser, p.clearAuth) {
		caps = append(caps, "USER", "SASL PLAIN")
	}
	caps = append(caps, "TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "IMPLEMENTATION im2000-pop3d", ".")
	return strings.Join(caps, "\r\n")
}
