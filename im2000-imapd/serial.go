package main

// One session, one goroutine at a time. The IMAP library calls a
// session's methods from its connection's goroutine, except Idle, which
// it runs in a goroutine of its own; and when IDLE ends with a line other
// than DONE, or the client goes away, the library answers (BAD) or closes
// the session without waiting for Idle, whose poll (the agent asked, the
// state read, the view changed) then ran next to the following command:
// the race detector found storeFlags and sync, Store and sync, on the
// same view at once (a hostile review). serialSession is what the
// library is given: every method holds the session's mutex, and Idle
// holds it for one poll at a time, so imapSession's code never runs in
// two goroutines at once and needs no locks of its own.

import (
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
)

type serialSession struct {
	mu sync.Mutex
	s  *imapSession
}

var _ imapserver.SessionIMAP4rev2 = (*serialSession)(nil)
var _ imapserver.SessionAppendLimit = (*serialSession)(nil)

// idleTick is how often Idle looks at the state file (other sessions'
// changes); the agent is asked every imappoll (update.go: Poll).
const idleTick = time.Second

// Idle polls, a poll at a time under the mutex, until stop is closed or
// the session closed. stop is looked at again under the mutex: the
// library closes it before it reads the next command, so a poll never
// starts once that command may be running, and no untagged response of
// IDLE's comes in the middle of another command's.
func (p *serialSession) Idle(w *imapserver.UpdateWriter, stop <-chan struct{}) error {
	tick := time.NewTicker(idleTick)
	defer tick.Stop()
	for {
		if over, err := p.idlePoll(w, stop); over || err != nil {
			return err
		}
		select {
		case <-stop:
			return nil
		case <-tick.C:
		}
	}
}

func (p *serialSession) idlePoll(w *imapserver.UpdateWriter, stop <-chan struct{}) (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-stop:
		return true, nil
	default:
	}
	if p.s.closed {
		return true, nil
	}
	return false, p.s.Poll(w, true)
}

func (p *serialSession) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.s.Close()
}

func (p *serialSession) Login(user, pass string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.s.Login(user, pass)
}

func (p *serialSession) Select(name string, o *imap.SelectOptions) (*imap.SelectData, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.s.Select(name, o)
}

func (p *serialSession) Unselect() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.s.Unselect()
}

func (p *serialSession) Create(name string, o *imap.CreateOptions) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.s.Create(name, o)
}

func (p *serialSession) Delete(name string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.s.Delete(name)
}

func (p *serialSession) Rename(name, newName string, o *imap.RenameOptions) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.s.Rename(name, newName, o)
}

func (p *serialSession) Subscribe(name string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.s.Subscribe(name)
}

func (p *serialSession) Unsubscribe(name string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.s.Unsubscribe(name)
}

func (p *serialSession) List(w *imapserver.ListWriter, ref string, patterns []string, o *imap.ListOptions) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.s.List(w, ref, patterns, o)
}

func (p *serialSession) Status(name string, o *imap.StatusOptions) (*imap.StatusData, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.s.Status(name, o)
}

func (p *serialSession) AppendLimit() uint32 { return p.s.AppendLimit() } // a constant

func (p *serialSession) Append(name string, r imap.LiteralReader, o *imap.AppendOptions) (*imap.AppendData, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.s.Append(name, r, o)
}

func (p *serialSession) Poll(w *imapserver.UpdateWriter, allowExpunge bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.s.Poll(w, allowExpunge)
}

func (p *serialSession) Expunge(w *imapserver.ExpungeWriter, uids *imap.UIDSet) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.s.Expunge(w, uids)
}

func (p *serialSession) Search(kind imapserver.NumKind, c *imap.SearchCriteria, o *imap.SearchOptions) (*imap.SearchData, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.s.Search(kind, c, o)
}

func (p *serialSession) Fetch(w *imapserver.FetchWriter, numSet imap.NumSet, o *imap.FetchOptions) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.s.Fetch(w, numSet, o)
}

func (p *serialSession) Store(w *imapserver.FetchWriter, numSet imap.NumSet, flags *imap.StoreFlags, o *imap.StoreOptions) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.s.Store(w, numSet, flags, o)
}

func (p *serialSession) Copy(numSet imap.NumSet, dest string) (*imap.CopyData, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.s.Copy(numSet, dest)
}

func (p *serialSession) Namespace() (*imap.NamespaceData, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.s.Namespace()
}

func (p *serialSession) Move(w *imapserver.MoveWriter, numSet imap.NumSet, dest string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.s.Move(w, numSet, dest)
}
