package session

import (
	"errors"
	"net"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"

	"im2000/lib/fail"
)

// ServeOneGeneration serves one session, tcpserver's socket on stdin, as
// ServeGenerations serves each of a listener's: admitted (g.Admit) under
// c's limits, wrapped (g.Wrap), on a server of its own (g.NewServer), and
// closed on SIGTERM or SIGINT (g.Stopping). There is no SIGHUP: the next
// session's process reads the settings afresh. It returns when the
// session is over, or a refused one at once; an error, marked for
// fail.Code, is what kept it from serving.
func ServeOneGeneration[C any](c C, g Generations[C]) error {
	conn, err := net.FileConn(os.Stdin)
	if err != nil {
		return fail.Perm(errors.New("stdin is not a socket: run under tcpserver, or with -l"))
	}
	lc, ok := g.Admit(conn, g.Limits(c), g.Limits(c).SlotsFor(false))
	if !ok {
		return nil
	}
	var given net.Conn = lc
	if g.Wrap != nil {
		given = g.Wrap(lc, c)
	}
	l := newHandoff(lc.LocalAddr())
	lc.OnRelease(func() { l.Close() }) // the session is over: so is the server
	srv := g.NewServer(c)
	var stopped atomic.Bool
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		s := <-sig
		stopped.Store(true)
		g.Stopping(s)
		srv.Close()
	}()
	go l.give(given)
	if err := srv.Serve(l); err != nil && !errors.Is(err, net.ErrClosed) && !stopped.Load() {
		return fail.Temp(err)
	}
	return nil
}
