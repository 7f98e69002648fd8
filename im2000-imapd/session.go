package main

import (
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"im2000/lib/agent"
	"im2000/lib/inbox"
)

// imapSession is one client's session: imapserver.Session over the
// user's state (state.go), pending queue (inbox.go) and cache (cache.go).
type imapSession struct {
	*config
	peer     string
	imapConn *imapserver.Conn // for BYE
	start    time.Time
	conn     *limitConn

	user, pass string // kept for the agent's polls (refresh)
	dir        string // imapstate/USER
	mb         mailbox
	cache      *cache
	entries    map[string]agent.Entry // the pending queue by name, as last listed
	lastTake   time.Time

	selected bool
	readOnly bool       // EXAMINE: no flag changes, no expunges
	gone     bool       // the state began again: BYE sent (update.go: stale)
	view     []*viewMsg // the client's view: sequence number i+1 is view[i]
	seen     stamp      // of the state file as the view last followed it
	uidNext  imap.UID
	validity uint32

	closed bool // Close was called (serial.go: Idle polls no more)
}

// viewMsg is a message as this session's client knows it.
type viewMsg struct {
	uid   imap.UID
	name  string
	size  int64
	exact bool // size is the recorded octets of BODY[] (fetch.go: recordSize)
	date  int64
	flags []imap.Flag
	gone  bool // expunged elsewhere; the client not told yet
}

const inboxName = "INBOX"

func isInbox(name string) bool { return strings.EqualFold(name, inboxName) }

// errReadOnly answers a change to a mailbox opened with EXAMINE.
var errReadOnly = imapErr("READ-ONLY", "INBOX was opened with EXAMINE: read-only")

func noMailbox(name string) error {
	return imapErr(imap.ResponseCodeNonExistent, "no mailbox "+name+": INBOX is the only one here")
}

func (s *imapSession) Close() error {
	s.closed = true
	if s.mb != nil {
		s.mb.Close()
	}
	if s.user != "" {
		logLoggedOut(s.peer, s.user)
	}
	return nil
}

// Login checks the password at the agent (delayed per address, limits.go),
// and only then creates the user's state and takes the notifications: a
// wrong password neither holds the lock nor leaves a directory behind.
func (s *imapSession) Login(user, pass string) error {
	if s.user != "" {
		return imapErr(imap.ResponseCodeClientBug, "already logged in")
	}
	if err := s.checkLogin(s.peer, user, pass); err != nil {
		return loginError(s.peer, user, err)
	}
	dir := filepath.Join(s.state, user)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return tempError(s.peer, err)
	}
	mb, err := s.open(dir, user, pass)
	if err != nil {
		return tempError(s.peer, err)
	}
	s.user, s.pass, s.dir, s.mb = user, pass, dir, mb
	s.entries = map[string]agent.Entry{}
	s.cache = newCache(filepath.Join(dir, "cache"), s.cacheBytes)
	if ib, ok := mb.(*inbox.Inbox); ok {
		ib.LogPrefix = s.peer + ": " + user + ": "
	}
	if s.limits.Lifetime > 0 {
		mb.SetDeadline(s.start.Add(s.limits.Lifetime))
	}
	if err := s.refresh(true); err != nil {
		s.mb.Close()
		s.user, s.pass, s.mb = "", "", nil
		return loginError(s.peer, user, err)
	}
	s.conn.authed.Store(true)
	state, _, _ := readState(dir)
	n := 0
	if state != nil {
		n = len(state.Msgs)
	}
	logLoggedIn(s.peer, user, n)
	return nil
}

// Select opens INBOX; EXAMINE opens it read-only (RFC 9051 6.3.3): no
// \Seen by FETCH, STORE and MOVE refused, EXPUNGE and CLOSE expunge
// nothing (update.go).
func (s *imapSession) Select(name string, options *imap.SelectOptions) (*imap.SelectData, error) {
	if !isInbox(name) {
		return nil, noMailbox(name)
	}
	state, st, err := readState(s.dir)
	if err != nil {
		return nil, tempError(s.peer, err)
	}
	if state.UIDValidity == 0 {
		if state, st, err = lockedUpdate(s.dir, func(*mboxState) (bool, error) { return false, nil }); err != nil {
			return nil, tempError(s.peer, err)
		}
	}
	s.selected, s.seen = true, st
	s.readOnly = options != nil && options.ReadOnly
	s.view = s.view[:0]
	s.uidNext, s.validity = state.UIDNext, state.UIDValidity
	var unseen uint32
	for i := range state.Msgs {
		r := &state.Msgs[i]
		s.view = append(s.view, &viewMsg{uid: r.UID, name: r.Name, size: r.Size, exact: r.Exact, date: r.Date, flags: r.flags()})
		if unseen == 0 && !r.has(imap.FlagSeen) {
			unseen = uint32(i + 1)
		}
	}
	return &imap.SelectData{
		Flags:             permanentFlags,
		PermanentFlags:    permanentFlags,
		NumMessages:       uint32(len(s.view)),
		FirstUnseenSeqNum: unseen,
		UIDNext:           state.UIDNext,
		UIDValidity:       state.UIDValidity,
	}, nil
}

func (s *imapSession) Unselect() error {
	s.selected, s.view, s.readOnly = false, nil, false
	return nil
}

func (s *imapSession) Create(name string, _ *imap.CreateOptions) error {
	return imapErr(imap.ResponseCodeCannot, "mailboxes cannot be created here: INBOX is the only one (IM2000 mail stays at its senders' stores)")
}

func (s *imapSession) Delete(name string) error {
	return imapErr(imap.ResponseCodeCannot, "mailboxes cannot be deleted here: INBOX is the only one")
}

func (s *imapSession) Rename(name, newName string, _ *imap.RenameOptions) error {
	return imapErr(imap.ResponseCodeCannot, "mailboxes cannot be renamed here: INBOX is the only one")
}

func (s *imapSession) Subscribe(name string) error {
	if !isInbox(name) {
		return noMailbox(name)
	}
	return nil
}

func (s *imapSession) Unsubscribe(name string) error {
	if !isInbox(name) {
		return noMailbox(name)
	}
	return imapErr(imap.ResponseCodeCannot, "INBOX stays subscribed")
}

func (s *imapSession) List(w *imapserver.ListWriter, ref string, patterns []string, options *imap.ListOptions) error {
	if len(patterns) == 0 { // LIST "" "": the hierarchy delimiter
		return w.WriteList(&imap.ListData{Attrs: []imap.MailboxAttr{imap.MailboxAttrNoSelect}, Delim: '/'})
	}
	for _, p := range patterns {
		if imapserver.MatchList(inboxName, '/', ref, p) {
			data := &imap.ListData{Attrs: []imap.MailboxAttr{imap.MailboxAttrHasNoChildren}, Delim: '/', Mailbox: inboxName}
			if options != nil && options.ReturnStatus != nil {
				st, err := s.Status(inboxName, options.ReturnStatus)
				if err != nil {
					return err
				}
				data.Status = st
			}
			return w.WriteList(data)
		}
	}
	return nil
}

func (s *imapSession) Status(name string, options *imap.StatusOptions) (*imap.StatusData, error) {
	if !isInbox(name) {
		return nil, noMailbox(name)
	}
	state, _, err := readState(s.dir)
	if err != nil {
		return nil, tempError(s.peer, err)
	}
	if state.UIDValidity == 0 {
		if state, _, err = lockedUpdate(s.dir, func(*mboxState) (bool, error) { return false, nil }); err != nil {
			return nil, tempError(s.peer, err)
		}
	}
	num, unseen, deleted, size := uint32(len(state.Msgs)), uint32(0), uint32(0), int64(0)
	for i := range state.Msgs {
		r := &state.Msgs[i]
		if !r.has(imap.FlagSeen) {
			unseen++
		}
		if r.has(imap.FlagDeleted) {
			deleted++
		}
		size += r.Size
	}
	data := &imap.StatusData{Mailbox: inboxName}
	if options.NumMessages {
		data.NumMessages = &num
	}
	if options.UIDNext {
		data.UIDNext = state.UIDNext
	}
	if options.UIDValidity {
		data.UIDValidity = state.UIDValidity
	}
	if options.NumUnseen {
		data.NumUnseen = &unseen
	}
	if options.NumDeleted {
		data.NumDeleted = &deleted
	}
	if options.Size {
		data.Size = &size
	}
	if options.AppendLimit {
		limit := uint32(maxLiteral)
		data.AppendLimit = &limit
	}
	return data, nil
}

// AppendLimit is LITERAL-'s bound, not 0: the library refuses a literal
// over it without reading it, and a non-synchronizing one's octets would
// then be read as commands (literal.go). One within it is read, and
// Append refuses it; a synchronizing one over it is never sent.
func (s *imapSession) AppendLimit() uint32 { return maxLiteral }

func (s *imapSession) Append(string, imap.LiteralReader, *imap.AppendOptions) (*imap.AppendData, error) {
	return nil, imapErr(imap.ResponseCodeCannot, "APPEND is not possible here: IM2000 mail comes from its senders' stores")
}

func (s *imapSession) Copy(imap.NumSet, string) (*imap.CopyData, error) {
	return nil, imapErr(imap.ResponseCodeCannot, "COPY is not possible here: INBOX is the only mailbox (MOVE to any name deletes)")
}

func (s *imapSession) Namespace() (*imap.NamespaceData, error) {
	return &imap.NamespaceData{Personal: []imap.NamespaceDescriptor{{Prefix: "", Delim: '/'}}}, nil
}
