package session

import (
	"context"
	"crypto/tls"
	"net"
	"time"

	"im2000/lib/tlsconf"
	"im2000/lib/wire"
)

// DialTLS connects to addr, runs the TLS handshake with cfg (nil: verify
// against the system roots for addr's host) within timeout, and starts a
// session: the implicit TLS form of a service (DESIGN.md section 3). The
// minimum version is tlsconf.MinVersion whatever cfg says.
//
// Programs do not use it: their sessions come from Connect and DialWhere,
// whose lib/locate dial finds the TLS forms, verifies for the domain looked
// up (tlsca) and refuses downgrades. This direct dial to an address is for
// tests and benchmarks that name the server themselves.
func DialTLS(ctx context.Context, p *wire.Protocol, addr string, timeout time.Duration, cfg *tls.Config) (*Client, error) {
	if cfg == nil {
		cfg = &tls.Config{}
	} else {
		cfg = cfg.Clone()
	}
	cfg.MinVersion = max(cfg.MinVersion, tlsconf.MinVersion)
	if cfg.ServerName == "" {
		if host, _, err := net.SplitHostPort(addr); err == nil {
			cfg.ServerName = host
		}
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: timeout}, Config: cfg}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return NewClient(c, p, timeout), nil
}

// TLSState is the session's TLS state, nil when it is in cleartext.
func (c *Client) TLSState() *tls.ConnectionState {
	tc, ok := c.conn.(*tls.Conn)
	if !ok {
		return nil
	}
	st := tc.ConnectionState()
	return &st
}
