package main

import (
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"

	"im2000/lib/auth"
	"im2000/lib/inbox"
	"im2000/lib/session"
)

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
	// readSet and writeSet: a deadline was set. The first Read or Write
	// sets one if the library has not: under -tls its first act is the
	// greeting's Write, whose handshake reads the ClientHello before it
	// sets any deadline, and a client that never sent one held the
	// session for good (tests/imap_limits_test.go).
	readSet, writeSet atomic.Bool
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
	l.readSet.Store(true)
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
	l.writeSet.Store(true)
	return l.Conn.SetWriteDeadline(d)
}

func (l *limitConn) SetDeadline(t time.Time) error {
	return errors.Join(l.SetReadDeadline(t), l.SetWriteDeadline(t))
}

// Read logs a session ended by its lifetime or by the time it has to log in.
func (l *limitConn) Read(b []byte) (int, error) {
	if !l.readSet.Load() {
		l.SetReadDeadline(time.Time{})
	}
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

func (l *limitConn) Write(b []byte) (int, error) {
	if !l.writeSet.Load() {
		l.SetWriteDeadline(time.Time{})
	}
	return l.Conn.Write(b)
}

func (l *limitConn) Close() error {
	err := l.Conn.Close()
	l.once.Do(func() { close(l.closed) })
	return err
}

// checkLogin checks user's password, delayed per client address by this
// server's own limiter (imapstate/.authfail; authdelay, authmaxdelay), as
// im2000-pop3d does (lib/inbox.CheckLogin).
func (c *config) checkLogin(peer, user, pass string) error {
	return inbox.CheckLogin(c.failures, session.PeerAddr(peer), user, pass, c.check)
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
