package main

import (
	"net"

	"im2000/lib/conf"
	"im2000/lib/fail"
	"im2000/lib/session"
)

// generations is how sessions are served with c's settings, one on stdin
// or a listener's (listen), through lib/session: go-smtp reads its limits
// (databytes, maxrcpt, me) from its Server while sessions run, so a SIGHUP
// cannot change them in place; it makes a new generation for the sessions
// to come, and those already begun finish with theirs. SIGTERM and SIGINT
// close every session.
func generations(d conf.Dir, f session.Flags, c *config) session.Generations[*config] {
	g := session.Generations[*config]{
		// The certificate is the first load's: lib/tlsconf reloads the
		// pair itself (on SIGHUP, or when its files change).
		Load:         func() (*config, error) { return load(d, c.tls) },
		Limits:       func(c *config) session.Limits { return c.limits },
		NewServer:    func(c *config) session.GenServer { return newServer(c, f.Timeout) },
		Admit:        admit,
		Settings:     func() { logSettings(d) },
		Failed:       logReloadFailed,
		Stopping:     logStopping,
		AcceptFailed: logAcceptFailed,
	}
	if f.TLS {
		g.Wrap = func(lc *session.LimitedConn, c *config) net.Conn { return implicitTLS(lc, c.tls) }
	}
	return g
}

// listen serves f.Listen (-l) with g.
func listen(f session.Flags, c *config, g session.Generations[*config]) {
	nl, err := net.Listen("tcp", f.Listen)
	if err != nil {
		logFatal(fail.Temp(err))
	}
	l := session.LimitListener(nl, f.Conns, "421 4.3.2 Too many sessions, try again later\r\n")
	logListening(l.Addr(), f.TLS, f.Conns)
	session.ServeGenerations(l, c, g)
}
