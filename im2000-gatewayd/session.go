package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/emersion/go-msgauth/authres"
	"github.com/emersion/go-smtp"

	"im2000/lib/addr"
	"im2000/lib/mailmsg"
	"im2000/lib/session"
	"im2000/lib/store"
	"im2000/lib/trace"
)

// client is one SMTP connection from the outside world.
type client struct {
	cfg   *config
	smtp  *smtp.Conn
	peer  net.Addr
	from  *addr.Mailbox // nil before MAIL; the zero Mailbox is the null sender <>
	null  bool
	rcpts []addr.Mailbox
	lists []string
}

func smtpErr(code int, enh smtp.EnhancedCode, format string, a ...any) *smtp.SMTPError {
	return &smtp.SMTPError{Code: code, EnhancedCode: enh, Message: fmt.Sprintf(format, a...)}
}

// errTooLarge is a message over databytes, or announced so with SIZE.
var errTooLarge = smtpErr(552, smtp.EnhancedCode{5, 3, 4}, "Message too large")

func (s *client) Mail(from string, opts *smtp.MailOptions) error {
	s.Reset()
	if opts != nil && opts.Size > s.cfg.maxMessage {
		return errTooLarge // go-smtp's own check allows one octet more
	}
	if from == "" {
		s.from, s.null = &addr.Mailbox{}, true
		return nil
	}
	mb, err := addr.Parse(from)
	if err != nil {
		return smtpErr(553, smtp.EnhancedCode{5, 1, 7}, "Bad sender address: %v", err)
	}
	s.from = &mb
	return nil
}

// Rcpt takes a recipient only if it is one of this host's accounts (the
// agent's spool has its directory) or hosted lists (lists/NAME exists) at
// one of its domains: anything else is refused here, so the gateway is
// never an open relay. A name that is both is the list.
func (s *client) Rcpt(to string, _ *smtp.RcptOptions) error {
	if s.from == nil {
		return smtpErr(503, smtp.EnhancedCode{5, 5, 1}, "MAIL first")
	}
	mb, err := addr.Parse(to)
	if err != nil {
		return smtpErr(553, smtp.EnhancedCode{5, 1, 3}, "Bad recipient address: %v", err)
	}
	if !s.cfg.domains[mb.Domain] {
		logRelayRefused(s.peer, mb.String())
		return smtpErr(550, smtp.EnhancedCode{5, 7, 1}, "Relaying denied: %s is not a domain of this host", mb.Domain)
	}
	local := strings.ToLower(mb.Local)
	if store.CheckListName(local) == nil {
		if fi, err := os.Stat(s.cfg.listPath(local)); err == nil && fi.Mode().IsRegular() {
			for _, l := range s.lists {
				if l == local {
					return nil // named twice: posted once
				}
			}
			s.lists = append(s.lists, local)
			return nil
		}
	}
	name := mb.Local
	if local == "postmaster" && s.cfg.postmaster != "" {
		name = s.cfg.postmaster // the postmaster setting (RFC 5321 4.5.1)
	}
	account, ok := s.cfg.spool.Account(name)
	if !ok {
		logNoSuchUser(s.peer, mb.String())
		return smtpErr(550, smtp.EnhancedCode{5, 1, 1}, "No such user here: %s", mb)
	}
	s.rcpts = append(s.rcpts, addr.Mailbox{Local: account, Domain: mb.Domain})
	return nil
}

func (s *client) Reset() {
	s.from, s.null, s.rcpts, s.lists = nil, false, nil, nil
}

func (s *client) Logout() error { return nil }

// Data takes the message: it is spooled to an unlinked file (DKIM needs
// the whole of it before the field that reports it can be written on
// top), checked, and committed once into the gateway account's archive.
func (s *client) Data(r io.Reader) error {
	defer io.Copy(io.Discard, r) // go-smtp wants it consumed, whatever happens
	if s.from == nil || len(s.rcpts)+len(s.lists) == 0 {
		return smtpErr(503, smtp.EnhancedCode{5, 5, 1}, "No valid recipients")
	}
	st, err := store.Open(s.cfg.root)
	if err != nil {
		return s.temp(err)
	}
	acct, err := st.Account(s.cfg.account)
	if err != nil {
		return s.temp(err)
	}
	spool, err := os.CreateTemp(filepath.Join(s.cfg.root, s.cfg.account, "tmp"), "gateway-")
	if err != nil {
		return s.temp(err)
	}
	os.Remove(spool.Name()) // nothing to clean after a crash
	defer spool.Close()
	// databytes is enforced here, exactly: go-smtp's MaxMessageBytes
	// refuses a DATA message of exactly that size and a BDAT one only
	// over it, so it is set one higher (main.go) as the outer bound.
	n, err := io.Copy(spool, io.LimitReader(r, s.cfg.maxMessage+1))
	if err != nil {
		var se *smtp.SMTPError
		if errors.As(err, &se) {
			return se // too large, a line too long: go-smtp's own answer
		}
		return s.temp(err)
	}
	if n > s.cfg.maxMessage {
		return errTooLarge
	}
	if n == 0 {
		// "BDAT 0 LAST", or a DATA of "." alone: nothing to store.
		logMessageRefused(s.peer, s.sender(), errEmpty)
		return smtpErr(554, smtp.EnhancedCode{5, 6, 0}, "Message refused: it is empty")
	}
	spf := s.cfg.checkSPF(session.IPOf(s.peer), s.smtp.Hostname(), s.sender())
	// The posting right is decided now: an error at DATA reaches the
	// sender as their own MTA's bounce (the design notes' rule). A right
	// given to an address or a domain is a right of that sender, so a
	// post whose envelope sender that domain's SPF record forbids (fail)
	// is refused: readers remove the gateway's Authentication-Results
	// from list posts, so the forgery would not show.
	for _, l := range s.lists {
		right, err := s.cfg.mayPost(l, s.from, s.null)
		if err != nil {
			return s.temp(err)
		}
		switch {
		case right == noRight:
			logPostRefused(s.peer, l, s.sender())
			return smtpErr(550, smtp.EnhancedCode{5, 7, 1}, "%s may not post to the list %s@%s", s.senderShown(), l, s.cfg.me)
		case right == memberRight && spf.Value == authres.ResultFail:
			logPostSPFFail(s.peer, l, s.sender())
			return smtpErr(550, smtp.EnhancedCode{5, 7, 23}, "SPF of %s fails for your address %s: the list %s@%s takes posts from its members only from hosts their domain allows", s.from.Domain, session.IPOf(s.peer), l, s.cfg.me)
		}
	}
	results := []authres.Result{spf}
	if _, err := spool.Seek(0, io.SeekStart); err != nil {
		return s.temp(err)
	}
	results = append(results, s.cfg.checkDKIM(bufio.NewReader(spool))...)
	if _, err := spool.Seek(0, io.SeekStart); err != nil {
		return s.temp(err)
	}
	d, err := acct.NewDraft(store.Submission{Sender: s.cfg.sender, Lifetime: s.cfg.lifetime, Recipients: s.rcpts, Lists: s.lists},
		store.Limits{MaxMessage: s.cfg.maxMessage + maxOwnFields, Quota: s.cfg.quota, MaxRcpt: s.cfg.maxRcpt})
	if err != nil {
		return s.refused(err)
	}
	env := d.Envelope()
	if _, err := io.WriteString(d, s.fields(env.ID.String(), results)); err != nil {
		d.Abort()
		return s.refused(err)
	}
	if err := copyMessage(d, bufio.NewReader(spool), s.cfg.me); err != nil {
		d.Abort()
		if errors.Is(err, errFirstFolded) {
			logMessageRefused(s.peer, s.sender(), err)
			return smtpErr(554, smtp.EnhancedCode{5, 6, 0}, "Message refused: its header starts with a continuation line")
		}
		return s.refused(err)
	}
	// The share is charged what the quota will be: the message file,
	// the envelope and the gateway's own fields included, which grow with
	// the envelope sender (charging the client's octets only let 3-octet
	// messages with a 250-octet MAIL FROM fill the archive from one
	// address: second hostile review of issue 20).
	stored := storedSize(d)
	charged, ok := s.cfg.takeShare(s.peer, stored)
	if !ok {
		d.Abort()
		logShareFull(s.peer, s.sender(), stored, s.cfg.sharePct)
		return smtpErr(452, smtp.EnhancedCode{4, 3, 1}, "Too much mail from your address lately: one address may fill at most %d%% of this gateway's archive; try again later", s.cfg.sharePct)
	}
	// Commit leaves nothing of the message on error (lib/store), so the
	// share is given back whole.
	if _, err := d.Commit(); err != nil {
		charged.refund()
		return s.refused(err)
	}
	logStored(s.peer, s.sender(), env.ID.String(), len(env.Recipients), len(env.Lists), summary(results))
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: fmt.Sprintf("OK: stored as %s", env.ID)}
}

// maxOwnFields bounds the fields the gateway writes on top of a message.
const maxOwnFields = 8 << 10

func (s *client) sender() string {
	if s.null || s.from == nil {
		return ""
	}
	return s.from.String()
}

func (s *client) senderShown() string {
	if s.null {
		return "The null sender <>"
	}
	return s.from.String()
}

// fields are the gateway's own, on top of the message: Return-Path with
// the envelope sender as its first line (readers trust that line only from
// the gateway account, lib/trace), Received, and Authentication-Results.
func (s *client) fields(id string, results []authres.Result) string {
	with := "ESMTP"
	if isTLS(s.smtp.Conn()) {
		with = "ESMTPS"
	}
	helo := clean(s.smtp.Hostname())
	if helo == "" {
		helo = "unknown"
	}
	ip := session.IPOf(s.peer)
	lit := "[" + ip.String() + "]"
	if ip.Is6() {
		lit = "[IPv6:" + ip.String() + "]"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Return-Path: <%s>\r\n", s.sender())
	fmt.Fprintf(&b, "Received: from %s (%s)\r\n\tby %s (im2000-gatewayd) with %s id %s;\r\n\t%s\r\n", helo, lit, s.cfg.me, with, id, time.Now().Format(time.RFC1123Z))
	fmt.Fprintf(&b, "Authentication-Results: %s\r\n", fold(s.cfg.authResults(results)))
	return b.String()
}

// fold breaks an Authentication-Results value before each "; ".
func fold(v string) string {
	parts := strings.Split(v, "; ")
	for i := range parts {
		parts[i] = strings.TrimSpace(parts[i])
	}
	return strings.Join(parts, ";\r\n\t")
}

// summary is the results for the log line.
func summary(results []authres.Result) string {
	var parts []string
	for _, r := range results {
		switch r := r.(type) {
		case *authres.SPFResult:
			parts = append(parts, "spf="+string(r.Value))
		case *authres.DKIMResult:
			parts = append(parts, "dkim="+string(r.Value))
		}
	}
	return strings.Join(parts, " ")
}

func (s *client) temp(err error) error {
	logNotStored(s.peer, err)
	return smtpErr(451, smtp.EnhancedCode{4, 3, 0}, "Not stored, try again later")
}

// refused answers a draft the store did not take.
func (s *client) refused(err error) error {
	switch {
	case errors.Is(err, store.ErrTooLarge):
		return smtpErr(552, smtp.EnhancedCode{5, 3, 4}, "Message too large")
	case errors.Is(err, store.ErrQuota):
		logNotStored(s.peer, err)
		return smtpErr(452, smtp.EnhancedCode{4, 2, 2}, "The gateway's archive is full, try again later")
	case errors.Is(err, store.ErrTooManyRecipients):
		return smtpErr(452, smtp.EnhancedCode{4, 5, 3}, "Too many recipients")
	}
	return s.temp(err)
}

// errFirstFolded: the message's first line is a continuation line. It
// would be written right under the gateway's own Authentication-Results
// field and so continue it: results of the sender's choosing under this
// host's authserv-id. RFC 5322 has no header that starts folded.
var errFirstFolded = errors.New("the header's first line is a continuation line")

// errEmpty: a message of no octets at all.
var errEmpty = errors.New("the message is empty")

// copyMessage writes the message as it came, but for any
// Authentication-Results field in its header that claims this host's
// authserv-id (RFC 8601 section 5: only this host may say what it checked).
// A message whose first line starts with a space or tab is refused
// (errFirstFolded) before anything is written.
func copyMessage(w io.Writer, br *bufio.Reader, me string) error {
	if b, _ := br.Peek(1); len(b) == 1 && (b[0] == ' ' || b[0] == '\t') {
		return errFirstFolded
	}
	used := 0
	var field []byte // the Authentication-Results field being read, with its continuations
	flush := func() error {
		if field == nil {
			return nil
		}
		_, v, _ := strings.Cut(string(field), ":")
		f := field
		field = nil
		if trace.Claims(v, me) {
			return nil
		}
		_, err := w.Write(f)
		return err
	}
	for {
		line, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			// A line longer than the buffer: go-smtp allows none over
			// 1000 octets, so this is the body of a message without a
			// header end; write the rest as it is.
			if err := flush(); err != nil {
				return err
			}
			if _, err := w.Write(line); err != nil {
				return err
			}
			_, err = io.Copy(w, br)
			return err
		}
		if len(line) == 0 && err != nil {
			if err == io.EOF {
				return flush()
			}
			return err
		}
		used += len(line)
		blank := len(strings.TrimRight(string(line), "\r\n")) == 0
		cont := line[0] == ' ' || line[0] == '\t'
		if cont && field != nil && !blank {
			field = append(field, line...)
			continue
		}
		if err := flush(); err != nil {
			return err
		}
		name, _, isField := strings.Cut(string(line), ":")
		if !blank && isField && !cont && strings.EqualFold(strings.TrimRight(name, " \t"), "Authentication-Results") && used < mailmsg.MaxHeader {
			field = append([]byte(nil), line...)
			continue
		}
		if _, err := w.Write(line); err != nil {
			return err
		}
		if blank || (!cont && !isField) || used >= mailmsg.MaxHeader {
			_, err := io.Copy(w, br) // the body
			return err
		}
	}
}
