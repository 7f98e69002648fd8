package main

import (
	"errors"
	"time"

	"im2000/lib/auth"
	"im2000/lib/inbox"
	"im2000/lib/session"
)

// checkLogin checks user's password, delayed per client address by this
// server's own limiter (c.failures, in pop3state/.authfail; the settings
// authdelay and authmaxdelay): lib/inbox.CheckLogin says why and how.
func (p *pop) checkLogin(user, pass string) error {
	return inbox.CheckLogin(p.failures, session.PeerAddr(p.peer), user, pass, p.check)
}

// throttled answers a login refused by checkLogin's limiter.
func (p *pop) throttled(err error) bool {
	if !errors.Is(err, auth.ErrThrottled) {
		return false
	}
	logThrottled(p.peer, err)
	p.reply("-ERR [SYS/TEMP] too many failed logins from your address, try again later")
	return true
}

// writeDeadline is the deadline of each write to the client: the idle
// timeout from now, but never past the session's lifetime and a few
// seconds' grace (for the line that says the lifetime is over), so that a
// client reading slowly cannot hold a session, a RETR above all, past its
// lifetime. The end is fixed, not renewed with each write.
func (p *pop) writeDeadline() time.Time {
	d := time.Now().Add(p.timeout)
	if p.limits.Lifetime > 0 {
		if end := p.start.Add(p.limits.Lifetime + writeGrace); end.Before(d) {
			d = end
		}
	}
	return d
}

// writeGrace is how long past the lifetime the last reply may take.
const writeGrace = 5 * time.Second
