// Command im2000-submitd is the message store's MSOAP server: originators
// authenticate, submit messages into their own archive, track what became
// of them, and cancel them. See man/im2000-submitd.8.
package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"im2000/lib/addr"
	"im2000/lib/auth"
	"im2000/lib/conf"
	"im2000/lib/msgid"
	"im2000/lib/session"
	"im2000/lib/store"
	"im2000/lib/submit"
	"im2000/lib/wire"
	"im2000/lib/wire/msoap"
)

const usage = `usage: im2000-submitd [-l addr:port] [-c n] [-t seconds] [-m bytes] [-tls]
  Serves MSOAP for the store in $IM2000_STORE (or the store file of the
  configuration directory $IM2000_CONF): one session on stdin/stdout, as
  under tcpserver, or with -l as a listener.
` + session.FlagUsage

// config is what every session shares.
type config struct {
	conf        conf.Dir
	st          *store.Store
	auth        *auth.Checker
	me          string
	limits      store.Limits
	minLifetime time.Duration
	maxLifetime time.Duration
	resendFloor time.Duration
}

// handler is one session.
type handler struct {
	*config
	acct  *store.Account
	draft *store.Draft
	head  submit.Head // of the draft, for the From rule
}

func main() {
	f := session.ParseFlags("im2000-submitd", usage, os.Args[1:])
	d := conf.FromEnv()
	// The configuration in force: a listener's SIGHUP loads a new one, and
	// each session keeps the one it began with.
	srv := &session.Server{Proto: msoap.Protocol, Log: logSession}
	err := session.RunReloading(srv, f, d, session.Reloading[*config]{
		Load:       func() (*config, session.Limits, error) { return load(d) },
		NewHandler: func(c *config, _ *session.Session) session.Handler { return &handler{config: c} },
		Settings:   func() { logSettings(d) },
		Failed:     logReloadFailed,
	})
	if err != nil {
		logFatal(err)
	}
}

// load reads every setting: at start, and again on a listener's SIGHUP.
func load(d conf.Dir) (*config, session.Limits, error) {
	c, err := loadConfig(d)
	if err != nil {
		return nil, session.Limits{}, err
	}
	lim, err := session.ServerLimits(d, c.st.Root, msoap.Protocol.Name)
	return c, lim, err
}

func loadConfig(d conf.Dir) (*config, error) {
	root, err := d.Store()
	if err != nil {
		return nil, err
	}
	c := &config{conf: d}
	if c.st, err = store.Open(root); err != nil {
		return nil, err
	}
	for _, w := range c.st.Warnings {
		logStoreWarning(w)
	}
	if c.limits.MaxRcpt, err = store.MaxRcpt(d); err != nil {
		return nil, err
	}
	if c.auth, err = auth.FromConf(d, filepath.Join(root, ".authfail")); err != nil {
		return nil, err
	}
	if c.me, err = d.Me(); err != nil {
		return nil, err
	}
	if c.limits.MaxMessage, err = d.Num("databytes"); err != nil {
		return nil, err
	}
	if c.limits.Quota, err = d.Num("quota"); err != nil {
		return nil, err
	}
	minL, err := d.Num("minlifetime")
	if err != nil {
		return nil, err
	}
	maxL, err := d.Num("maxlifetime")
	if err != nil {
		return nil, err
	}
	c.minLifetime, c.maxLifetime = time.Duration(minL)*time.Second, time.Duration(maxL)*time.Second
	if c.resendFloor, err = store.ResendFloor(d); err != nil {
		return nil, err
	}
	return c, nil
}

// Abort drops a submission in progress: nothing of it stays.
func (h *handler) Abort(*session.Session) {
	if h.draft != nil {
		h.draft.Abort()
		h.draft = nil
	}
}

func (h *handler) Handle(s *session.Session, cmd wire.Body) session.Reply {
	switch c := cmd.(type) {
	case *msoap.Authenticate:
		return h.authenticate(s, c)
	case *msoap.SubmitEnvelope:
		return h.envelope(s, c)
	case *msoap.SubmitMsgChunk:
		return h.chunk(s, c)
	case *msoap.Track:
		return h.track(s, c.ID)
	case *msoap.Cancel:
		return h.cancel(s, c.ID)
	case *msoap.Resend:
		return h.resend(s, c.ID)
	}
	return session.Reply{Status: msoap.ErrorUnexpectedCommand, ForceAbort: true}
}

func (h *handler) authenticate(s *session.Session, c *msoap.Authenticate) session.Reply {
	if !s.PasswordOK() {
		logCleartext(s.Remote)
		return session.Reply{Status: msoap.ErrorNotPermitted}
	}
	ok, err := h.auth.Check(s.Remote.Addr(), c.Account, c.Password)
	if err != nil {
		logAuthBroken(s.Remote, err)
		return session.Reply{Status: msoap.ErrorInternalProblem}
	}
	// The SMTP gateway's account never logs in, whatever its password:
	// readers show its messages' first line as "via SMTP from" it
	// (gatewayaccount in im2000-conf(5)).
	if gw, err := h.conf.Str("gatewayaccount"); err != nil || strings.EqualFold(c.Account, gw) {
		ok = false
	}
	if ok && store.CheckAccount(c.Account) == nil {
		if h.acct, err = h.st.Account(c.Account); err == nil {
			s.Account = c.Account
			logLogin(s.Remote, c.Account)
			return session.Reply{Body: msoap.AuthenticateOK{}}
		}
		logArchiveBroken(s.Remote, c.Account, err)
		return session.Reply{Status: msoap.ErrorInternalProblem}
	}
	logLoginFailed(s.Remote)
	return session.Reply{Status: msoap.ErrorNotAuthenticated}
}

// envelope opens a submission. Every recipient and list gets a status;
// only acceptable ones go into the message. With none acceptable no
// submission is opened.
func (h *handler) envelope(s *session.Session, c *msoap.SubmitEnvelope) session.Reply {
	if h.draft != nil {
		return session.Reply{Status: msoap.ErrorUnexpectedCommand, ForceAbort: true}
	}
	lifetime := time.Duration(min(c.Lifetime, 1<<32)) * time.Second
	if lifetime < h.minLifetime {
		return session.Reply{Status: msoap.ErrorLifetimeTooShort}
	}
	lifetime = min(lifetime, h.maxLifetime)
	var sub store.Submission
	resp := &msoap.SubmitEnvelopeOK{Recipients: make([]uint64, len(c.Recipients))}
	// Recipients named more than once make one (the later entries are
	// acceptable: they are in the message, as the first); past maxrcpt
	// distinct ones they are refused, as smtpd refuses RCPT there.
	var valid []addr.Mailbox
	var at []int // each valid recipient's place in the envelope
	for i, r := range c.Recipients {
		a, err := r.Addr()
		if err != nil {
			resp.Recipients[i] = msoap.SubmissionAccessDenied
			continue
		}
		valid, at = append(valid, a), append(at, i)
	}
	var fates []store.Fate
	sub.Recipients, fates = store.Collapse(valid, h.limits.MaxRcpt)
	over := 0
	for j, f := range fates {
		if f == store.OverCap {
			resp.Recipients[at[j]] = msoap.SubmissionAccessDenied
			over++
		}
	}
	if over > 0 || len(sub.Recipients) < len(valid) {
		logEnvelopeCut(s.Remote, s.Account, len(c.Recipients), len(sub.Recipients), over, int64(h.limits.MaxRcpt))
	}
	for _, l := range c.Lists {
		name := string(l)
		status := msoap.SubmissionAccessDenied
		if store.CheckListName(name) == nil {
			if ok, err := h.conf.MayPost(name, s.Account); err != nil {
				logListsUnreadable(s.Remote, err)
			} else if ok {
				status = msoap.Acceptable
				sub.Lists = append(sub.Lists, name)
			}
		}
		resp.Lists = append(resp.Lists, status)
	}
	if len(sub.Recipients) == 0 && len(sub.Lists) == 0 {
		return session.Reply{Body: resp}
	}
	var err error
	sub.Lifetime = lifetime
	if sub.Sender, err = addr.Parse(s.Account + "@" + h.me); err != nil {
		logNoAddress(s.Remote, s.Account, h.me, err)
		return session.Reply{Status: msoap.ErrorInternalProblem}
	}
	if h.draft, err = h.acct.NewDraft(sub, h.limits); err != nil {
		return h.storeError(s, err)
	}
	h.head = submit.Head{}
	return session.Reply{Body: resp}
}

// chunk appends to the submission; the last chunk commits it, and the
// answer to it carries the message's identifier.
func (h *handler) chunk(s *session.Session, c *msoap.SubmitMsgChunk) session.Reply {
	d := h.draft
	if d == nil || c.Offset != uint64(d.Size()) {
		return session.Reply{Status: msoap.ErrorUnexpectedCommand, ForceAbort: true}
	}
	if _, err := d.Write(c.Data); err != nil {
		return h.storeError(s, err)
	}
	h.head.Write(c.Data)
	if !c.IsLast {
		return session.Reply{Body: &msoap.SubmitMsgChunkOK{}}
	}
	if err := h.checkSenders(s); err != nil {
		logSenderRefused(s.Remote, s.Account, err)
		if errors.Is(err, submit.ErrSender) {
			return session.Reply{Status: msoap.ErrorNotPermitted, ForceAbort: true}
		}
		return session.Reply{Status: msoap.ErrorInternalProblem, ForceAbort: true}
	}
	h.draft = nil
	env, err := d.Commit()
	if err != nil {
		return h.storeError(s, err)
	}
	logSubmitted(s.Remote, s.Account, env.ID, d.Size(), len(env.Recipients), len(env.Lists))
	return session.Reply{Body: &msoap.SubmitMsgChunkOK{ID: &env.ID}}
}

// checkSenders applies the From rule (DESIGN.md section 3) to the message
// now that it is whole: its From and Sender must be the account's own
// address or ones senders/ACCOUNT allows it. The file is read each time,
// as lists/ is, so a change needs no restart.
func (h *handler) checkSenders(s *session.Session) error {
	section, err := h.head.Section()
	if err != nil {
		return err
	}
	senders, err := submit.LoadSenders(h.conf, s.Account, h.me)
	if err != nil {
		return err
	}
	return senders.CheckRaw(section)
}

// storeError answers a failed submission; the engine then aborts it.
func (h *handler) storeError(s *session.Session, err error) session.Reply {
	status := msoap.ErrorInternalProblem
	switch {
	case errors.Is(err, store.ErrTooLarge), errors.Is(err, syscall.ENOSPC):
		status = msoap.ErrorNotEnoughRoom
	case errors.Is(err, store.ErrQuota):
		status = msoap.ErrorWouldExceedQuota
	}
	logAborted(s.Remote, s.Account, err)
	return session.Reply{Status: status, ForceAbort: true}
}

func (h *handler) track(s *session.Session, id msgid.ID) session.Reply {
	m, err := h.acct.Open(id)
	if err != nil {
		return h.lookupError(s, err)
	}
	defer m.Close()
	st, err := h.acct.Status(id)
	if err != nil {
		return h.lookupError(s, err)
	}
	resp := &msoap.TrackOK{Recipients: []msoap.RecipientStatus{}}
	for i, r := range st.Recipients {
		resp.Recipients = append(resp.Recipients, msoap.RecipientStatus{
			Recipient: wire.FromAddr(m.Env.Recipients[i].Addr),
			Status:    msoap.DeliveryStatus{Notification: r.Notification.Wire(), Read: uint64(r.Read), Pinned: r.Pinned},
		})
	}
	return session.Reply{Body: resp}
}

func (h *handler) cancel(s *session.Session, id msgid.ID) session.Reply {
	if err := h.acct.Cancel(id); err != nil {
		return h.lookupError(s, err)
	}
	logCancelled(s.Remote, s.Account, id)
	return session.Reply{Body: msoap.CancelOK{}}
}

// resend is im2000's extension of MSOAP (msoap.Resend): the sender's
// im2000-status --resend at a remote store, with the store's floor.
func (h *handler) resend(s *session.Session, id msgid.ID) session.Reply {
	r, err := h.acct.Resend(id, time.Now(), h.resendFloor)
	if errors.Is(err, store.ErrFinished) {
		return session.Reply{Body: &msoap.ResendOK{}}
	}
	if err != nil {
		return h.lookupError(s, err)
	}
	if r.Moved > 0 {
		// Only a resend that moved a due time: one repeated in a loop
		// changes nothing after the first and logs nothing.
		logResent(s.Remote, s.Account, id, r)
	}
	ok := &msoap.ResendOK{Recipients: uint64(r.Recipients), Held: uint64(r.Held)}
	if r.Held > 0 {
		ok.Until = uint64(r.Until.Unix())
	}
	return session.Reply{Body: ok}
}

// lookupError: another account's id and a missing one answer alike.
func (h *handler) lookupError(s *session.Session, err error) session.Reply {
	if errors.Is(err, store.ErrNoSuch) {
		return session.Reply{Status: msoap.ErrorNoSuchMessage}
	}
	logArchiveBroken(s.Remote, s.Account, err)
	return session.Reply{Status: msoap.ErrorInternalProblem}
}
