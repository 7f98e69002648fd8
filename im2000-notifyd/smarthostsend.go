package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/emersion/go-smtp"

	"im2000/lib/addr"
	"im2000/lib/store"
	"im2000/lib/trace"
)

// dataReplyWait bounds the wait for the relay's reply to the final dot:
// RFC 5321 4.5.3.2.6 gives the server 10 minutes (a content filter may
// run then). Waiting less would count a message the relay took as not
// taken, and hand it again at every retry. A variable for the tests.
var dataReplyWait = 10 * time.Minute

// send makes one SMTP transaction of one message's recipients at domain:
// the recipients' states, and whether the session failed (then every
// state is the session's, and the rest of the batch is not tried).
func (s *smarthost) send(cfg *config, domain string, g []*entry) (states []store.Notification, session bool) {
	states = make([]store.Notification, len(g))
	set := func(st store.Notification) []store.Notification {
		for i := range states {
			states[i] = st
		}
		return states
	}
	m := g[0].msg
	where := fmt.Sprintf("%s/%s to %s via SMTP %s", m.acct.Name, m.id, domain, s.addr)
	msg, err := m.acct.Open(m.id)
	if err != nil {
		logSmarthostFailed(where, err.Error())
		return set(store.NoServer), false // the check decides next time
	}
	defer msg.Close()
	// The timeout for the session, and the message's size at 64 KiB/s:
	// a relay that trickles holds this worker, and only it, that long.
	d := cfg.timeout + time.Duration(msg.Size()/(64<<10))*time.Second
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	c, rc, err := s.dial(ctx, cfg)
	if err != nil {
		logSmarthostFailed(where, trace.Escape(err.Error()))
		return set(sessionState(err)), true
	}
	defer c.Close()
	defer c.Quit() // after the state is recorded: the relay's reply to QUIT changes nothing
	if why, final := s.refuse(c, rc, msg); why != "" {
		if !final {
			logSmarthostFailed(where, why+"; tried again: the relay's EHLO came over no verified TLS")
			return set(store.NoServer), false
		}
		logSmarthostFailed(where, why)
		return set(store.Refused), false
	}
	// SIZE= when the relay offers SIZE (go-smtp adds it then), and
	// BODY=8BITMIME when it offers 8BITMIME (go-smtp adds it always then).
	if err := c.Mail(m.sender, &smtp.MailOptions{Size: msg.Size()}); err != nil {
		if authNeeded(err) {
			logSmarthostFailed(where, "MAIL: "+trace.Escape(err.Error())+"; the relay wants AUTH or does not let this host relay: set smarthostuser and smarthostpassword, or let this host relay")
			return set(store.NoServer), true
		}
		logSmarthostFailed(where, "MAIL: "+trace.Escape(err.Error()))
		st, _ := replyState(err)
		// A 4xx to MAIL is the relay's word on the session (a rate
		// limit, a queue full): the rest of the batch waits too.
		return set(st), st != store.Refused
	}
	taken := 0
	for i, e := range g {
		// Quoted again as RFC 5321 wants: a quoted local part holding
		// "> ORCPT=..." must not become ESMTP parameters of the RCPT.
		if err := c.Rcpt(addr.Mailbox{Local: e.local, Domain: domain}.String(), nil); err != nil {
			logSmarthostFailed(where, "RCPT "+trace.Escape(e.local)+"@"+domain+": "+trace.Escape(err.Error()))
			if states[i], session = replyState(err); session {
				return set(states[i]), true
			}
			continue
		}
		states[i] = store.SMTP
		taken++
	}
	if taken == 0 {
		c.Reset()
		return states, false
	}
	reply, err := s.data(c, rc, msg)
	if err != nil {
		logSmarthostFailed(where, "DATA: "+trace.Escape(err.Error()))
		st, session := replyState(err)
		for i := range states {
			if states[i] == store.SMTP {
				states[i] = st
			}
		}
		return states, session
	}
	s.record(cfg, msg, domain, g, states, reply)
	logHandedOff(where, trace.Escape(reply))
	return states, false
}

// refuse says why the message is not even offered to this relay: larger
// than the SIZE it announced (RFC 1870), or 8-bit octets to a relay that
// does not offer 8BITMIME (RFC 6152: it may not be sent). final says the
// refusal is for good: the relay's EHLO answer came inside verified TLS
// (dial checks the handshake) or from a loopback address (the admin's own
// MTA on this host, where no one sits on the path), so the relay itself
// said what it takes, and retrying until the message expires would only
// hide the refusal from the sender (the log says which, for the
// administrator). Over cleartext to another host it is temporary
// (noserver, retried until the message's lifetime): one 502 to EHLO, a
// stripped 8BITMIME or an injected "250-SIZE 1" from whoever sits on the
// path would otherwise refuse the message for good (second hostile review
// of issue 20).
func (s *smarthost) refuse(c *smtp.Client, rc *relayConn, msg *store.Message) (why string, final bool) {
	_, final = c.TLSConnectionState()
	final = final || onLoopback(rc)
	if limit, ok := c.MaxMessageSize(); ok && limit > 0 && msg.Size() > int64(limit) {
		return fmt.Sprintf("the message's %d octets are over the relay's SIZE %d", msg.Size(), limit), final
	}
	if ok, _ := c.Extension("8BITMIME"); !ok && has8bit(msg.Body()) {
		return "the message has 8-bit octets and the relay offers no 8BITMIME", final
	}
	return "", false
}

// authNeeded says whether a refusal of MAIL is about the session, not
// the message: 530 or 5.7.0 (RFC 4954: authentication required, also
// postfix's "must issue a STARTTLS command first"), or the codes RFC 4954
// and RFC 5248 give authentication itself: 5.7.8 (credentials invalid),
// 5.7.9 (mechanism too weak), 5.7.10 and 5.7.11 (encryption needed).
// Refused, every message would fail for good until the setting is fixed;
// as noserver they wait for it, and the log says so. Any other 5xx, 5.7.1
// included, is the relay's word on this message (RFC 3463: 5.7.1 is
// "delivery not authorized, message refused": postfix's "Sender address
// rejected" for one sender): that message is refused, the batch goes on.
// Taking every 5.7.x for the session when no smarthostuser was set put
// the whole batch back at each round for one refused sender, and other
// users' messages to that domain never went (fourth hostile review of
// issue 20).
func authNeeded(err error) bool {
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code < 500 || se.Code > 599 {
		return false
	}
	switch se.EnhancedCode {
	case smtp.EnhancedCode{5, 7, 0}, smtp.EnhancedCode{5, 7, 8}, smtp.EnhancedCode{5, 7, 9},
		smtp.EnhancedCode{5, 7, 10}, smtp.EnhancedCode{5, 7, 11}:
		return true
	}
	return se.Code == 530
}

func has8bit(r io.Reader) bool {
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		b, err := br.ReadByte()
		if err != nil {
			return false
		}
		if b >= 0x80 {
			return true
		}
	}
}

// data sends the message and returns the relay's reply to the final dot,
// waited for dataReplyWait past the session's deadline if need be. Line
// ends are normalised (crlfWriter) before go-smtp's dot-stuffing.
func (s *smarthost) data(c *smtp.Client, rc *relayConn, msg *store.Message) (string, error) {
	w, err := c.Data()
	if err != nil {
		return "", err
	}
	cw := &crlfWriter{w: bufio.NewWriterSize(w, 32<<10)}
	if _, err := io.Copy(cw, msg.Body()); err != nil {
		return "", err
	}
	if err := cw.flush(); err != nil {
		return "", err
	}
	wait := time.Now().Add(dataReplyWait)
	if wait.After(rc.deadline) {
		rc.deadline = wait
	}
	c.SubmissionTimeout = dataReplyWait
	resp, err := w.CloseWithResponse()
	if err != nil {
		return "", err
	}
	return resp.StatusText, nil
}

// record writes, as soon as the relay has taken the message, the
// transaction's record (the relay and its reply: store.HandOff) and the
// state of the recipients it took: a crash after this hands nothing
// again. The recorder (record.go) then finds them final and leaves them.
// Written here, not there: the recorder writes once the whole batch (up
// to batchMax messages) is over, and a crash before it would hand every
// message of the batch to the relay again. If it cannot be written, the
// recorder tries again.
func (s *smarthost) record(cfg *config, msg *store.Message, domain string, g []*entry, states []store.Notification, reply string) {
	m := g[0].msg
	now := time.Unix(time.Now().Unix(), 0) // the record's time and the recipients' last attempt, to the second
	if err := msg.AddHandOff(store.HandOff{At: now, Domain: domain, Relay: s.addr, Reply: reply}); err != nil {
		logNotRecorded(m.acct.Name, m.id, err)
	}
	// Account.Update, not msg.Update: it closes its file, and so drops the
	// lock, at once, while msg stays open for QUIT.
	err := m.acct.Update(m.id, func(_ *store.Envelope, st *store.Status) error {
		for i, e := range g {
			r := &st.Recipients[e.index]
			if states[i] != store.SMTP || r.Notification.Final() {
				continue
			}
			r.Notification, r.Attempts, r.Last, r.Next = store.SMTP, r.Attempts+1, now, time.Time{}
		}
		return nil
	})
	if err != nil {
		logNotRecorded(m.acct.Name, m.id, err)
	}
}

// crlfWriter makes every line end CRLF: a bare CR or a bare LF becomes
// CRLF. go-smtp's dot-stuffing (textproto) turns a bare LF into CRLF but
// passes a bare CR through, so "\r.\r\n" in a stored body would reach the
// relay as is: a relay that takes it for the end of the data would read
// what follows as commands (SMTP smuggling). Normalised rather than
// refused: the store takes any octets a sender wrote (RFC 5322 forbids
// bare CR and LF, but mail has them), and CRLF is the only line end SMTP
// has.
type crlfWriter struct {
	w  *bufio.Writer
	cr bool // the last octet was a CR
}

func (c *crlfWriter) Write(p []byte) (int, error) {
	for _, b := range p {
		if c.cr {
			c.cr = false
			c.w.WriteString("\r\n")
			if b == '\n' {
				continue
			}
		}
		switch b {
		case '\r':
			c.cr = true
		case '\n':
			c.w.WriteString("\r\n")
		default:
			c.w.WriteByte(b)
		}
	}
	// bufio.Writer's error sticks: a relay gone stops the copy here.
	if _, err := c.w.Write(nil); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (c *crlfWriter) flush() error {
	if c.cr {
		c.cr = false
		c.w.WriteString("\r\n")
	}
	return c.w.Flush()
}
