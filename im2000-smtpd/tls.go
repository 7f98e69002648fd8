package main

import (
	"crypto/tls"
	"errors"
	"net"

	"github.com/emersion/go-smtp"

	"im2000/lib/conf"
	"im2000/lib/session"
	"im2000/lib/tlsconf"
)

// loadTLS reads the certificate and key (tlscert, tlskey): with them the
// server offers STARTTLS, and with -tls it speaks TLS from the first byte
// (port 465 style, RFC 8314). Without them, -tls is an error and STARTTLS
// is not offered.
func loadTLS(d conf.Dir, implicit bool) (*tls.Config, error) {
	cfg, err := tlsconf.ServerConfig(d, logTLS)
	if errors.Is(err, tlsconf.ErrNoCert) && !implicit {
		return nil, nil
	}
	return cfg, err
}

// implicitTLS makes c a TLS server connection. go-smtp runs the handshake
// itself before its greeting, within its read and write timeouts, which
// the limitedConn beneath cuts short by the session limits (authtimeout,
// sessionlifetime): a stalled handshake is bounded as a stalled command.
func implicitTLS(c *session.LimitedConn, cfg *tls.Config) net.Conn {
	return tls.Server(c, cfg)
}

// limited finds the limitedConn under a connection go-smtp holds, which
// is a *tls.Conn after STARTTLS or with -tls.
func limited(c net.Conn) *session.LimitedConn {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	lc, _ := c.(*session.LimitedConn)
	return lc
}

// passwordOK says whether AUTH may be taken on this connection: over TLS,
// from loopback, or where the admin set cleartextauth. smtpd runs only on
// a socket, never on a local user's pipes; a socket without an IP address
// (Unix-domain) counts as remote.
func (s *client) passwordOK() bool {
	_, isTLS := s.smtp.TLSConnectionState()
	return tlsconf.PasswordOK(isTLS, netipOf(s.peer), false, s.cfg.clearAuth)
}

// errEncryptionRequired is RFC 4954's answer to AUTH in cleartext where
// passwords must not cross it.
var errEncryptionRequired = &smtp.SMTPError{Code: 538, EnhancedCode: smtp.EnhancedCode{5, 7, 11},
	Message: "Encryption required for authentication: use STARTTLS, or the TLS port"}
