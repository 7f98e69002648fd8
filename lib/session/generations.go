package session

import (
	"errors"
	"net"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// GenServer is a server that fixes its settings when it is made and serves
// the connections of a listener with them: go-smtp's *smtp.Server, whose
// sessions read its limits (the message size, the recipients, the domain)
// while they run, so that a SIGHUP cannot change them in place.
type GenServer interface {
	Serve(net.Listener) error
	Close() error
}

// Generations is what a listener whose server is a GenServer gives
// ServeGenerations to reload its settings on SIGHUP (RunReloading is the
// same for this package's own Server). C is everything the program reads
// from the configuration directory.
type Generations[C any] struct {
	// Load reads every setting again, on SIGHUP; an error leaves the
	// settings in force.
	Load func() (C, error)
	// Limits are C's session limits; the count of sessions per address
	// carries over to the next generation, under its cap.
	Limits func(C) Limits
	// NewServer makes the server of one generation, with C's settings.
	NewServer func(C) GenServer
	// Admit takes a slot of a connection's address (the program's admit,
	// on Admit), or turns it away.
	Admit func(net.Conn, Limits, Slots) (*LimitedConn, bool)
	// Wrap, if set, makes what the server is given of an admitted
	// connection (a TLS server connection, for a port of implicit TLS).
	Wrap func(*LimitedConn, C) net.Conn
	// The program's log.go: the settings in force ("info: settings:"), at
	// start and after each SIGHUP that loaded; a SIGHUP that did not
	// ("warning: SIGHUP:"); SIGTERM or SIGINT ("info: shutting down:"); a
	// failed accept ("warning: accept failed:"), tried again after a pause.
	Settings     func()
	Failed       func(error)
	Stopping     func(os.Signal)
	AcceptFailed func(error)
}

// generation is the settings in force from one start or SIGHUP on, with
// the server whose sessions use them.
type generation[C any] struct {
	cfg   C
	srv   GenServer
	l     *handoff
	slots Slots
	live  atomic.Int64 // sessions admitted and not yet closed
}

// ServeGenerations serves l with c's settings until SIGTERM or SIGINT,
// which close every session. Each SIGHUP that loads makes a new generation
// (a new server) for the sessions that begin from then on; the sessions
// already begun finish with the server, and the settings, they began with.
// A generation that is not the current one is closed at the first SIGHUP
// that finds it without a session left.
func ServeGenerations[C any](l net.Listener, c C, g Generations[C]) {
	var (
		mu   sync.Mutex
		gens []*generation[C] // the current one last
		cur  atomic.Pointer[generation[C]]
	)
	start := func(c C, slots Slots) {
		n := &generation[C]{cfg: c, srv: g.NewServer(c), l: newHandoff(l.Addr()), slots: slots}
		go n.srv.Serve(n.l)
		mu.Lock()
		if old := cur.Swap(n); old != nil {
			old.l.Close() // no new sessions; its own go on
		}
		kept := gens[:0]
		for _, o := range gens {
			if o.live.Load() > 0 {
				kept = append(kept, o)
			} else {
				o.srv.Close()
			}
		}
		gens = append(kept, n)
		mu.Unlock()
	}
	// Signals are caught before the settings are logged: a supervisor that
	// waits for that line and then sends SIGHUP must not kill the process
	// with the signal's default action.
	var stopping atomic.Bool
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	start(c, g.Limits(c).SlotsFor(true))
	g.Settings()

	go func() {
		for s := range sig {
			if s == syscall.SIGHUP {
				old := cur.Load()
				nc, err := g.Load()
				if err != nil {
					g.Failed(err)
					continue
				}
				// The sessions per address carry over, under the new cap
				// (as Server.Reconfigure does): new empty counts would
				// let every address in again beside the sessions it holds.
				slots, lim := old.slots, g.Limits(nc)
				switch m, ok := slots.(*MemSlots); {
				case ok && lim.PerAddr > 0 && lim.Slots == nil:
					m.setN(lim.PerAddr)
				default:
					slots = lim.SlotsFor(true)
				}
				start(nc, slots)
				g.Settings()
				continue
			}
			g.Stopping(s)
			stopping.Store(true)
			mu.Lock()
			for _, o := range gens {
				o.srv.Close()
			}
			mu.Unlock()
			l.Close() // last: the accept loop's end ends ServeGenerations
			return
		}
	}()

	for {
		conn, err := l.Accept()
		if err != nil {
			if stopping.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			g.AcceptFailed(err)
			time.Sleep(100 * time.Millisecond) // EMFILE and the like: do not spin
			continue
		}
		now := cur.Load()
		lc, ok := g.Admit(conn, g.Limits(now.cfg), now.slots)
		if !ok {
			continue
		}
		var nc net.Conn = lc
		if g.Wrap != nil {
			nc = g.Wrap(lc, now.cfg)
		}
		// owner is the generation that serves the session; the release
		// runs only once it has it.
		var owner *generation[C]
		lc.OnRelease(func() { owner.live.Add(-1) })
		for {
			owner = cur.Load()
			owner.live.Add(1)
			if owner.l.give(nc) {
				break
			}
			if stopping.Load() {
				// Closed by SIGTERM: no generation will ever take it, and
				// the loop must get back to the closed listener to end.
				// The release takes the count back.
				nc.Close()
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
