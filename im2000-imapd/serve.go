package main

import (
	"net"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"im2000/lib/conf"
	"im2000/lib/fail"
	"im2000/lib/session"
)

// listen serves f.Listen (-l), as pop3d does. Each session keeps the
// configuration it began with; SIGHUP loads the settings again for the
// sessions to come (the count per address carries over while
// sessionsperaddr stays), and settings that do not load leave those in
// force.
func listen(d conf.Dir, f session.Flags, c *config) {
	l, err := net.Listen("tcp", f.Listen)
	if err != nil {
		logFatal(fail.Temp(err))
	}
	logListening(l.Addr(), f.TLS, f.Conns)
	logSettings(d)
	l = session.LimitListener(l, f.Conns, "* BYE [UNAVAILABLE] too many sessions, try again later\r\n")
	var cur atomic.Pointer[config]
	cur.Store(c)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		for s := range sig {
			if s != syscall.SIGHUP {
				logStopping(s)
				os.Exit(0)
			}
			old := cur.Load()
			nc, err := load(d, f.TLS)
			if err != nil {
				logReloadFailed(err)
				continue
			}
			nc.timeout, nc.slots = old.timeout, old.slots
			if nc.limits.PerAddr != old.limits.PerAddr {
				nc.slots = nc.limits.SlotsFor(true)
			}
			cur.Store(nc)
			logSettings(d)
		}
	}()
	for {
		conn, err := l.Accept()
		if err != nil {
			logAcceptFailed(err)
			time.Sleep(100 * time.Millisecond) // EMFILE and the like: do not spin
			continue
		}
		c := cur.Load()
		peer := conn.RemoteAddr().String()
		release, ok := c.admit(conn, session.PeerAddr(peer), peer)
		if !ok {
			continue
		}
		go func() {
			defer release()
			c.serve(conn, peer)
		}()
	}
}
