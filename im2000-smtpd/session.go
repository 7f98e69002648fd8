package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"im2000/lib/addr"
	"im2000/lib/fail"
	"im2000/lib/mailmsg"
	"im2000/lib/msgid"
	"im2000/lib/session"
	"im2000/lib/store"
	"im2000/lib/submit"
)

// An SMTP submission session (go-smtp's Session): AUTH, then the
// envelope and the message, committed through lib/submit.

// client is one SMTP connection.
type client struct {
	cfg      *config
	conn     *session.LimitedConn
	peer     net.Addr
	smtp     *smtp.Conn
	account  string
	password string
	rcpts    []addr.Mailbox
}

// AuthMechanisms is what EHLO offers: nothing where a password may not
// be taken (passwordOK), so that a client starts TLS first.
func (s *client) AuthMechanisms() []string {
	if !s.passwordOK() {
		return nil
	}
	return []string{sasl.Plain, sasl.Login}
}

func (s *client) Auth(mech string) (sasl.Server, error) {
	if !s.passwordOK() {
		logCleartext(s.peer)
		return nil, errEncryptionRequired
	}
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(func(identity, user, pass string) error {
			if identity != "" && identity != user {
				return smtp.ErrAuthFailed
			}
			return s.check(user, pass)
		}), nil
	case sasl.Login:
		return &loginServer{check: s.check}, nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

// check passes AUTH through to the store's account check: the passwords
// file (with its growing delays), or the remote store's MSOAP.
func (s *client) check(user, pass string) error {
	// The SMTP gateway's account never logs in, whatever its password:
	// readers show its messages' first line as "via SMTP from" it
	// (gatewayaccount in im2000-conf(5)).
	if gw, err := s.cfg.conf.Str("gatewayaccount"); err != nil || strings.EqualFold(user, gw) {
		return smtp.ErrAuthFailed
	}
	if s.cfg.remote {
		if err := s.checkRemote(user, pass); err != nil {
			return err
		}
	} else {
		ip := netipOf(s.peer)
		ok, err := s.cfg.checker.Check(ip, user, pass)
		if err != nil {
			logAuthUnchecked(s.peer, user, err)
			return errTempAuth
		}
		if !ok {
			logAuthFailed(s.peer, user)
			return smtp.ErrAuthFailed
		}
	}
	s.account, s.password = user, pass
	if s.conn != nil {
		s.conn.Authenticated() // from now on, the session's lifetime is its limit
	}
	logAuthenticated(s.peer, user)
	return nil
}

func (s *client) Mail(from string, _ *smtp.MailOptions) error {
	if s.account == "" {
		return smtp.ErrAuthRequired
	}
	return nil // the sender recorded is always the account's own address
}

func (s *client) Rcpt(to string, _ *smtp.RcptOptions) error {
	if s.account == "" {
		return smtp.ErrAuthRequired
	}
	a, err := addr.Parse(to)
	if err != nil {
		return &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 1, 3}, Message: fmt.Sprintf("Bad address %q: %v", to, err)}
	}
	s.rcpts = append(s.rcpts, a) // the store checks it with the message, at DATA
	return nil
}

func (s *client) Data(r io.Reader) error {
	defer io.Copy(io.Discard, r) // go-smtp wants it consumed, whatever happens
	if s.account == "" {
		return smtp.ErrAuthRequired
	}
	msg, err := mailmsg.Read(bufio.NewReaderSize(r, 64<<10))
	if err != nil {
		return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "Message refused: " + err.Error()}
	}
	settings := s.cfg.settings
	settings.Account = s.account
	from, err := addr.Parse(s.account + "@" + settings.Me)
	if err != nil {
		return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 1, 7}, Message: "Your account has no valid address here"}
	}
	id, err := submit.Submit(&submit.Request{Conf: s.cfg.conf, Settings: &settings, Recipients: s.rcpts,
		Msg: msg, From: from, Password: s.password, NotRecorded: func(id msgid.ID, log string, err error) {
			logNotRecorded(s.peer, s.account, id, log, err)
		}})
	if err != nil {
		logNotStored(s.peer, s.account, err)
		return dataError(err)
	}
	logStored(s.peer, s.account, id.String(), len(s.rcpts))
	// A 250 as an *SMTPError is how go-smtp lets the reply say more than
	// "queued": where the message is, and that no bounce will ever come.
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0},
		Message: fmt.Sprintf("OK: stored in your archive as %s; its delivery status is there (im2000-status), no bounce will come", id)}
}

// dataError explains a refused message. IM2000 checks the envelope together
// with the message, so refusals of recipients come only now, at DATA.
func dataError(err error) error {
	perm := fail.Code(err) == fail.Permanent
	switch {
	case errors.Is(err, smtp.ErrTooLongLine):
		return &smtp.SMTPError{Code: 500, EnhancedCode: smtp.EnhancedCode{5, 5, 2}, Message: "Line longer than 1000 octets (RFC 5321); message refused"}
	case errors.Is(err, store.ErrTooLarge):
		return &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 3, 4}, Message: "Message too large for the store"}
	case errors.Is(err, store.ErrQuota):
		return &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 2, 2}, Message: "Your archive is over its quota; try again when old messages have expired"}
	case errors.Is(err, submit.ErrSender):
		msg := err.Error()
		if len(msg) > 400 { // a reply line has at most 512 octets
			msg = strings.ToValidUTF8(msg[:400], "") + "..."
		}
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Not stored: " + msg}
	case errors.Is(err, submit.ErrNotPermitted), errors.Is(err, store.ErrNoRecipients), perm:
		return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1},
			Message: "Not stored (IM2000 checks recipients with the message, so this comes at DATA): " + err.Error()}
	}
	return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Not stored, try again later: " + err.Error()}
}

func (s *client) Reset()        { s.rcpts = nil }
func (s *client) Logout() error { return nil }

// loginServer is SASL LOGIN (go-sasl has only its client side).
type loginServer struct {
	check func(user, pass string) error
	user  string
	step  int
}

func (l *loginServer) Next(response []byte) ([]byte, bool, error) {
	l.step++
	switch l.step {
	case 1:
		if len(response) > 0 { // an initial response carries the user name
			l.user, l.step = string(response), 2
			return []byte("Password:"), false, nil
		}
		return []byte("Username:"), false, nil
	case 2:
		l.user = string(response)
		return []byte("Password:"), false, nil
	}
	return nil, true, l.check(l.user, string(response))
}
