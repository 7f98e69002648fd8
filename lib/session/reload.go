package session

import (
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"

	"im2000/lib/conf"
	"im2000/lib/tlsconf"
)

// Reloading is what a server whose listener reloads its settings on
// SIGHUP gives RunReloading: C is everything it reads from the
// configuration directory (a config, or a handler shared by every session).
type Reloading[C any] struct {
	// Load reads every setting, the session limits among them. At start
	// its error stops the server; on SIGHUP it leaves the settings in
	// force.
	Load func() (C, Limits, error)
	// NewHandler makes a session's handler from the settings in force when
	// it began; it keeps them whatever a SIGHUP loads meanwhile.
	NewHandler func(C, *Session) Handler
	// Settings logs the settings in force (the program's log.go: "info:
	// settings: ..."), at start and after each SIGHUP that loaded.
	Settings func()
	// Failed logs a SIGHUP whose settings did not load ("warning:
	// SIGHUP: ...").
	Failed func(error)
}

// RunReloading loads the settings and serves as Run does. In listener mode
// it logs the settings in force and, on each SIGHUP, loads them all again:
// the new ones (swapped in atomically, with Reconfigure's limits and
// cleartextauth) are in force for the sessions that begin from then on.
// Under tcpserver each session is a process that reads the settings
// afresh: no settings line, and SIGHUP is left alone. srv's NewHandler and
// Limits are set here.
func RunReloading[C any](srv *Server, f Flags, d conf.Dir, r Reloading[C]) error {
	c, lim, err := r.Load()
	if err != nil {
		return err
	}
	var cur atomic.Pointer[C]
	cur.Store(&c)
	srv.Limits = lim
	srv.NewHandler = func(s *Session) Handler { return r.NewHandler(*cur.Load(), s) }
	if f.Listen != "" {
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		r.Settings()
		go func() {
			for range hup {
				reload(srv, d, r, &cur)
			}
		}()
	}
	return Run(srv, f)
}

func reload[C any](srv *Server, d conf.Dir, r Reloading[C], cur *atomic.Pointer[C]) {
	c, lim, err := r.Load()
	var clearAuth bool
	if err == nil {
		clearAuth, err = tlsconf.ClearAuth(d)
	}
	if err != nil {
		r.Failed(err)
		return
	}
	cur.Store(&c)
	srv.Reconfigure(lim, clearAuth)
	r.Settings()
}
