package session

import (
	"io"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"
)

// TextServer is what a server of a text protocol that runs its own
// sessions (im2000-imapd, im2000-pop3d: not lib/session's PDU servers, nor
// go-smtp's) gives RunText. C is everything it reads from the
// configuration directory; each session keeps the C it began with.
type TextServer[C any] struct {
	// Busy is the line a connection beyond -c gets before it is closed,
	// BusyAddr the one a connection beyond sessionsperaddr gets (the
	// protocol's own refusal, CRLF-terminated).
	Busy, BusyAddr string
	// Load reads every setting again on SIGHUP (listener mode); its error
	// leaves the settings in force.
	Load func() (C, error)
	// Limits are the session limits of the settings c (sessionsperaddr).
	Limits func(c C) Limits
	// Serve runs one session on conn with the settings c; peer names the
	// client as the log does.
	Serve func(c C, conn net.Conn, peer string)
	Log   TextLog
}

// TextLog is how a text server logs what RunText does (the functions of
// its log.go); every field must be set.
type TextLog struct {
	Listening    func(a net.Addr, tls bool, conns int)
	Settings     func() // the settings in force: at start and after each SIGHUP that loaded
	ReloadFailed func(err error)
	Stopping     func(sig os.Signal)
	AcceptFailed func(err error)
	NotCounted   func(peer string, err error) // the slots failed; let in
	Refused      func(peer string, perAddr int)
}

// RunText serves according to the flags with the settings c: one session
// on stdin/stdout (the client named by StdioPeerName), or a listener on
// f.Listen that takes at most f.Conns sessions at once, stops on SIGTERM or
// SIGINT and, on SIGHUP, loads the settings again for the sessions to
// come (the count per address carries over while sessionsperaddr stays).
// Either way, each session first takes a slot of its client's address.
// It returns only an error that keeps it from serving.
func RunText[C any](f Flags, c C, srv TextServer[C]) error {
	if f.Listen == "" {
		slots := srv.Limits(c).SlotsFor(false)
		conn, err := StdioConn()
		if err != nil {
			return err
		}
		peer := StdioPeerName(conn)
		release, ok := srv.admit(conn, peer, srv.Limits(c).PerAddr, slots)
		if !ok {
			return nil
		}
		defer release()
		srv.Serve(c, conn, peer)
		return nil
	}
	return srv.listen(f, c)
}

// textState is what a listener's sessions begin with: the settings and
// the slots per address that go with them.
type textState[C any] struct {
	c     C
	lim   Limits
	slots Slots
}

func (srv TextServer[C]) listen(f Flags, c C) error {
	l, err := net.Listen("tcp", f.Listen)
	if err != nil {
		return err
	}
	// Caught before the settings line: a supervisor that waits for it and
	// then sends SIGHUP must not kill the process by the default action.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	srv.Log.Listening(l.Addr(), f.TLS, f.Conns)
	srv.Log.Settings()
	l = LimitListener(l, f.Conns, srv.Busy)
	var cur atomic.Pointer[textState[C]]
	lim := srv.Limits(c)
	cur.Store(&textState[C]{c: c, lim: lim, slots: lim.SlotsFor(true)})
	go func() {
		for s := range sig {
			if s != syscall.SIGHUP {
				srv.Log.Stopping(s)
				os.Exit(0)
			}
			srv.reload(&cur)
		}
	}()
	for {
		conn, err := l.Accept()
		if err != nil {
			srv.Log.AcceptFailed(err)
			time.Sleep(100 * time.Millisecond) // EMFILE and the like: do not spin
			continue
		}
		st := cur.Load()
		peer := conn.RemoteAddr().String()
		release, ok := srv.admit(conn, peer, st.lim.PerAddr, st.slots)
		if !ok {
			continue
		}
		go func() {
			defer release()
			srv.Serve(st.c, conn, peer)
		}()
	}
}

// reload loads the settings for the sessions to come. The slots carry
// over unless sessionsperaddr changed: the sessions in progress still
// count against the new settings.
func (srv TextServer[C]) reload(cur *atomic.Pointer[textState[C]]) {
	old := cur.Load()
	c, err := srv.Load()
	if err != nil {
		srv.Log.ReloadFailed(err)
		return
	}
	st := &textState[C]{c: c, lim: srv.Limits(c), slots: old.slots}
	if st.lim.PerAddr != old.lim.PerAddr {
		// The sessions an address holds go on counting, under the new cap.
		if m, ok := old.slots.(*MemSlots); ok && st.lim.PerAddr > 0 && st.lim.Slots == nil {
			m.setN(st.lim.PerAddr)
		} else {
			st.slots = st.lim.SlotsFor(true)
		}
	}
	cur.Store(st)
	srv.Log.Settings()
}

// admit takes a slot of the client's address (slots nil: none counted).
func (srv TextServer[C]) admit(conn net.Conn, peer string, perAddr int, slots Slots) (func(), bool) {
	return takeSlot(conn, PeerAddr(peer), slots, srv.BusyAddr,
		func(err error) { srv.Log.NotCounted(peer, err) },
		func() { srv.Log.Refused(peer, perAddr) })
}

// takeSlot is the one rule of the cap per address (sessionsperaddr), for
// Admit and RunText: it takes one of remote's slots (slots nil: none
// counted) and returns what gives it back. Over the cap, the client is
// sent refusal (within a second) and conn closed. A failure to count lets
// the session in: the global cap and the session's lifetime still hold.
func takeSlot(conn net.Conn, remote netip.Addr, slots Slots, refusal string, notCounted func(error), refused func()) (func(), bool) {
	if slots == nil {
		return func() {}, true
	}
	release, ok, err := slots.Acquire(remote)
	switch {
	case err != nil:
		notCounted(err)
		return func() {}, true
	case !ok:
		refused()
		conn.SetWriteDeadline(time.Now().Add(time.Second))
		io.WriteString(conn, refusal)
		conn.Close()
	}
	return release, ok
}
