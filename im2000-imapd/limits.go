package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"

	"im2000/lib/auth"
	"im2000/lib/fail"
	"im2000/lib/inbox"
	"im2000/lib/session"
	"im2000/lib/store"
)

// admit takes a slot of the client's address (the setting sessionsperaddr;
// counted in memory by a listener, in lock files under tcpserver, where
// each session is a process), as im2000-pop3d does. Over the cap the
// client gets a BYE and the connection is closed. A failure to count lets
// the session in: the global cap and the session's lifetime still hold.
func (c *config) admit(conn net.Conn, remote netip.Addr, peer string) (func(), bool) {
	if c.slots == nil {
		return func() {}, true
	}
	release, ok, err := c.slots.Acquire(remote)
	switch {
	case err != nil:
		logNotCounted(peer, err)
		return func() {}, true
	case !ok:
		logRefused(peer, c.limits.PerAddr)
		conn.SetWriteDeadline(time.Now().Add(time.Second))
		io.WriteString(conn, "* BYE [UNAVAILABLE] too many sessions from your address, try again later\r\n")
		conn.Close()
	}
	return release, ok
}

// limitConn bounds every read and write of a session, whatever deadline
// the IMAP library asks for (its own are fixed: 30 s for a command, 35
// minutes in IDLE): a read ends at the idle timeout (-t), cut short by
// sessionlifetime and, before login, by authtimeout (session.Limits); a
// write never runs past the lifetime and a few seconds' grace. The
// library's TLS (implicit and STARTTLS) runs over it, so a handshake has
// the same bounds.
type limitConn struct {
	net.Conn
	c      *config
	start  time.Time
	authed atomic.Bool
	closed chan struct{}
	once   sync.Once
	mu     sync.Mutex
	why    string // the limit of the current read deadline, "" for the idle timeout
}

// writeGrace is how long past the lifetime the last reply may take.
const writeGrace = 5 * time.Second

func (l *limitConn) SetReadDeadline(t time.Time) error {
	d, why := l.c.limits.Deadline(l.start, l.c.timeout, l.authed.Load())
	if !t.IsZero() && t.Before(d) {
		d, why = t, ""
	}
	l.mu.Lock()
	l.why = why
	l.mu.Unlock()
	return l.Conn.SetReadDeadline(d)
}

func (l *limitConn) SetWriteDeadline(t time.Time) error {
	d := time.Now().Add(l.c.timeout)
	if l.c.limits.Lifetime > 0 {
		if end := l.start.Add(l.c.limits.Lifetime + writeGrace); end.Before(d) {
			d = end
		}
	}
	if !t.IsZero() && t.Before(d) {
		d = t
	}
	return l.Conn.SetWriteDeadline(d)
}

func (l *limitConn) SetDeadline(t time.Time) error {
	return errors.Join(l.SetReadDeadline(t), l.SetWriteDeadline(t))
}

// Read logs a session ended by its lifetime or by the time it has to log in.
func (l *limitConn) Read(b []byte) (int, error) {
	n, err := l.Conn.Read(b)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		l.mu.Lock()
		why := l.why
		l.mu.Unlock()
		if why != "" {
			logLimit(l.Conn.RemoteAddr(), why)
		}
	}
	return n, err
}

func (l *limitConn) Close() error {
	err := l.Conn.Close()
	l.once.Do(func() { close(l.closed) })
	return err
}

// checkLogin checks user's password, delayed per client address by this
// server's own limiter (imapstate/.authfail; authdelay, authmaxdelay), as
// im2000-pop3d does: the agent sees every check come from this server's
// address, so the client must be slowed here. A name that is no account
// name is refused unchecked and counted as a failure; an address too far
// ahead is refused unchecked (auth.ErrThrottled) after a second.
func (c *config) checkLogin(peer, user, pass string) error {
	remote := session.PeerAddr(peer)
	lim := c.failures
	var due time.Time
	if lim != nil {
		var err error
		if due, err = lim.Ready(remote); err != nil {
			time.Sleep(time.Second) // the client's own session: no spinning
			return err
		}
	}
	var err error
	if store.CheckAccount(user) != nil {
		err = fail.Perm(fmt.Errorf("not a valid account name: %w", inbox.ErrAuth))
		user = ""
	} else {
		err = c.check(user, pass)
	}
	switch {
	case lim == nil:
	case err == nil:
		lim.Succeed(remote, user)
	case errors.Is(err, inbox.ErrAuth):
		time.Sleep(lim.FailAt(remote, user, due))
	}
	return err
}

// loginError is the IMAP answer to a failed login, logged.
func loginError(peer, user string, err error) error {
	switch {
	case errors.Is(err, auth.ErrThrottled):
		logThrottled(peer, err)
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeUnavailable,
			Text: "too many failed logins from your address, try again later"}
	case errors.Is(err, inbox.ErrAuth):
		logLoginFailed(peer, user)
		return imapErr(imap.ResponseCodeAuthenticationFailed, "invalid login")
	}
	return tempError(peer, err)
}

// tempError logs err and answers NO [UNAVAILABLE].
func tempError(peer string, err error) error {
	logUnreachable(peer, err)
	return imapErr(imap.ResponseCodeUnavailable, "cannot reach your mail right now, try again later")
}

func imapErr(code imap.ResponseCode, text string) error {
	return &imap.Error{Type: imap.StatusResponseTypeNo, Code: code, Text: text}
}
