package main

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"

	"im2000/lib/auth"
	"im2000/lib/remote"
	"im2000/lib/session"
	"im2000/lib/wire/msoap"
)

// tooMany is the answer to a connection over its address's cap.
const tooMany = "421 4.7.0 Too many sessions from your address, try again later\r\n"

// limitedConn applies the session limits (lib/session.Limits) under
// go-smtp, which sets a read deadline before each line it reads: every
// deadline it sets is cut short by the session's lifetime and, until AUTH
// succeeds, by the time it has for that. go-smtp answers a deadline that
// passes with 421 and closes; this logs which limit it was.
type limitedConn struct {
	net.Conn
	limits  session.Limits
	start   time.Time
	authed  atomic.Bool
	why     atomic.Value // string: the limit the read deadline now stands for
	logged  atomic.Bool
	release func()
	once    sync.Once
}

func newLimitedConn(c net.Conn, l session.Limits, release func()) *limitedConn {
	lc := &limitedConn{Conn: c, limits: l, start: time.Now(), release: release}
	lc.why.Store("")
	lc.SetReadDeadline(time.Now().Add(time.Hour)) // go-smtp sets its own before the first read
	return lc
}

func (c *limitedConn) SetReadDeadline(t time.Time) error {
	idle := time.Until(t)
	if t.IsZero() {
		idle = 100 * 365 * 24 * time.Hour
	}
	d, why := c.limits.Deadline(c.start, idle, c.authed.Load())
	c.why.Store(why)
	return c.Conn.SetReadDeadline(d)
}

func (c *limitedConn) SetDeadline(t time.Time) error {
	c.Conn.SetWriteDeadline(t)
	return c.SetReadDeadline(t)
}

func (c *limitedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if errors.Is(err, os.ErrDeadlineExceeded) && c.why.Load().(string) != "" && c.logged.CompareAndSwap(false, true) {
		logLimit(c.RemoteAddr(), c.why.Load().(string))
	}
	return n, err
}

func (c *limitedConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}

// admit takes a slot of c's address. Over the cap, the client is told so
// and c closed. A failure to count lets the session in (the global cap
// and the lifetime still hold).
func admit(c net.Conn, l session.Limits, slots session.Slots) (*limitedConn, bool) {
	release := func() {}
	if slots != nil {
		r, ok, err := slots.Acquire(netipOf(c.RemoteAddr()))
		switch {
		case err != nil:
			logNotCounted(c.RemoteAddr(), err)
		case !ok:
			logRefused(c.RemoteAddr(), l.PerAddr)
			c.SetWriteDeadline(time.Now().Add(time.Second))
			io.WriteString(c, tooMany)
			c.Close()
			return nil, false
		default:
			release = r
		}
	}
	return newLimitedConn(c, l, release), true
}

// errTempAuth answers an AUTH that could not be checked now.
var errTempAuth = &smtp.SMTPError{Code: 454, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Temporary authentication failure, try again later"}

// checkRemote checks an AUTH at the remote store (MSOAP). The store sees
// every attempt come from this server's address, so the client is delayed
// here, by its own address (s.cfg.failures, with sessiondir; list this
// server in the store's authfrontends): an attempt from an address whose
// answers are due further ahead than authmaxdelay is refused unchecked
// and temporarily (after a second, so that a loop of refusals does not
// spin); a failure waits its delay. Only the store's
// "not authenticated" is a failed password (535): anything else, the
// store unreachable or refusing for now, is temporary (454), or clients
// would drop a right password.
func (s *client) checkRemote(user, pass string) error {
	ip, who := netipOf(s.peer), user // user is cleared below when it is not a valid name
	lim := s.cfg.failures
	var due time.Time
	if lim != nil {
		var err error
		if due, err = lim.Ready(ip); err != nil {
			logThrottled(s.peer, err)
			time.Sleep(time.Second) // the client's own session: no spinning
			return errTempAuth
		}
	}
	var err error
	bad := auth.Valid(user, pass) != nil || pass == "" // "": remote.DialAs would use this server's own password
	if bad {
		user = ""
	} else if rs, e := remote.DialAs(s.cfg.conf, user, pass); e != nil {
		err = e
	} else {
		rs.Close()
	}
	var se *session.StatusError
	switch {
	case !bad && err == nil:
		if lim != nil {
			lim.Succeed(ip, user)
		}
		return nil
	case bad || errors.As(err, &se) && se.Status == msoap.ErrorNotAuthenticated:
		logAuthFailed(s.peer, who)
		if lim != nil {
			time.Sleep(lim.FailAt(ip, user, due))
		}
		return smtp.ErrAuthFailed
	}
	logAuthUnchecked(s.peer, user, err)
	return errTempAuth
}
