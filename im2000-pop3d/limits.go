package main

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"time"

	"im2000/lib/auth"
	"im2000/lib/fail"
	"im2000/lib/inbox"
	"im2000/lib/session"
	"im2000/lib/store"
)

// admit takes a slot of the client's address (the setting sessionsperaddr;
// counted in memory by a listener, in lock files under tcpserver, where
// each session is a process). Over the cap, the client is told so and the
// connection closed. A failure to count lets the session in: the global
// cap and the session's lifetime still hold.
func (c *config) admit(conn session.Conn, remote netip.Addr, peer string) (func(), bool) {
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
		io.WriteString(conn, "-ERR [SYS/TEMP] too many sessions from your address, try again later\r\n")
		conn.Close()
	}
	return release, ok
}

// checkLogin checks user's password, delayed per client address by this
// server's own limiter (c.failures, in pop3state/.authfail; the settings
// authdelay and authmaxdelay). The agent (queryd) sees every check come
// from this server's address: were the client not delayed here, one
// attacker's guesses would earn that address's delays at the agent for
// every user of this server (list this server in the agent's
// authfrontends). A name that is no account name is refused without a
// check and counted as a failure; an attempt from an address whose
// answers are due further ahead than authmaxdelay is refused unchecked,
// temporarily (auth.ErrThrottled), after a second (the client's own
// session waits, so that a loop of refusals does not spin).
func (p *pop) checkLogin(user, pass string) error {
	remote := session.PeerAddr(p.peer)
	lim := p.failures
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
		err = p.check(user, pass)
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
