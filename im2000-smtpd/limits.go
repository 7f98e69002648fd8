package main

import (
	"errors"
	"net"
	"time"

	"github.com/emersion/go-smtp"

	"im2000/lib/auth"
	"im2000/lib/remote"
	"im2000/lib/session"
	"im2000/lib/wire/msoap"
)

// tooMany is the answer to a connection over its address's cap.
const tooMany = "421 4.7.0 Too many sessions from your address, try again later\r\n"

// admitLog logs what session.Admit and session.LimitedConn decide.
var admitLog = session.AdmitLog{NotCounted: logNotCounted, Refused: logRefused, Limit: logLimit}

// admit takes a slot of c's address (session.Admit); until AUTH succeeds
// (LimitedConn.Authenticated) the session is bounded by authtimeout too.
func admit(c net.Conn, l session.Limits, slots session.Slots) (*session.LimitedConn, bool) {
	return session.Admit(c, l, slots, tooMany, false, admitLog)
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
