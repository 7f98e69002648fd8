package main

import (
	"errors"
	"net"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/emersion/go-smtp"

	"im2000/lib/conf"
	"im2000/lib/fail"
	"im2000/lib/session"
)

// generation is the settings in force from one start or SIGHUP on, with
// the go-smtp server whose sessions use them. go-smtp reads its limits
// (maxmessage, maxrcpt, me) from its Server while sessions run, so a
// SIGHUP cannot change them in place: it makes a new generation for the
// sessions to come, and the sessions already begun finish with theirs,
// as agentd's and queryd's do.
type generation struct {
	cfg   *config
	srv   *smtp.Server
	l     *handoff
	slots session.Slots
	live  atomic.Int64 // sessions admitted and not yet closed
}

// listen serves f.Listen (-l): SIGHUP loads the settings again into a new
// generation, SIGTERM and SIGINT close every session.
func listen(d conf.Dir, f session.Flags, c *config) {
	nl, err := net.Listen("tcp", f.Listen)
	if err != nil {
		logFatal(fail.Temp(err))
	}
	l := session.LimitListener(nl, f.Conns, "421 4.3.2 Too many sessions, try again later\r\n")
	logListening(l.Addr(), f.TLS, f.Conns)
	logSettings(d)

	var (
		mu   sync.Mutex
		gens []*generation // the current one last
		cur  atomic.Pointer[generation]
	)
	start := func(c *config, slots session.Slots) {
		g := &generation{cfg: c, srv: newServer(c, f.Timeout), l: newHandoff(l.Addr()), slots: slots}
		go g.srv.Serve(g.l)
		mu.Lock()
		old := cur.Swap(g)
		if old != nil {
			old.l.Close() // no new sessions; its own go on
		}
		// Generations whose sessions have all ended are dropped.
		kept := gens[:0]
		for _, o := range gens {
			if o.live.Load() > 0 {
				kept = append(kept, o)
			} else {
				o.srv.Close()
			}
		}
		gens = append(kept, g)
		mu.Unlock()
	}
	start(c, c.limits.SlotsFor(true))

	var stopping atomic.Bool
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	go func() {
		for s := range sig {
			if s == syscall.SIGHUP {
				old := cur.Load()
				nc, err := load(d, c.tls)
				if err != nil {
					logReloadFailed(err)
					continue
				}
				// The count per address carries over while the cap stays.
				slots := old.slots
				if nc.limits.PerAddr != old.cfg.limits.PerAddr {
					slots = nc.limits.SlotsFor(true)
				}
				start(nc, slots)
				logSettings(d)
				continue
			}
			logStopping(s)
			stopping.Store(true)
			mu.Lock()
			for _, g := range gens {
				g.srv.Close()
			}
			mu.Unlock()
			l.Close() // last: the accept loop's end ends the process
			return
		}
	}()

	for {
		conn, err := l.Accept()
		if err != nil {
			if stopping.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			logAcceptFailed(err)
			time.Sleep(100 * time.Millisecond) // EMFILE and the like: do not spin
			continue
		}
		g := cur.Load()
		lc, ok := admit(conn, g.cfg.limits, g.slots)
		if !ok {
			continue
		}
		var nc net.Conn = lc
		if f.TLS {
			nc = implicitTLS(lc, g.cfg.tls)
		}
		// owner is the generation that serves the session; the release
		// runs only once it has it.
		var owner *generation
		lc.OnRelease(func() { owner.live.Add(-1) })
		for {
			owner = cur.Load()
			owner.live.Add(1)
			if owner.l.give(nc) {
				break
			}
			owner.live.Add(-1) // closed by a SIGHUP just now: the next one takes it
		}
	}
}

// handoff is a generation's listener: the accept loop hands it the
// connections it admitted.
type handoff struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
	addr  net.Addr
}

func newHandoff(a net.Addr) *handoff {
	return &handoff{conns: make(chan net.Conn), done: make(chan struct{}), addr: a}
}

func (h *handoff) give(c net.Conn) bool {
	select {
	case h.conns <- c:
		return true
	case <-h.done:
		return false
	}
}

func (h *handoff) Accept() (net.Conn, error) {
	select {
	case c := <-h.conns:
		return c, nil
	case <-h.done:
		return nil, net.ErrClosed
	}
}

func (h *handoff) Close() error   { h.once.Do(func() { close(h.done) }); return nil }
func (h *handoff) Addr() net.Addr { return h.addr }
