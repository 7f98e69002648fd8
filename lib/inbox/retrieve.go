package inbox

import (
	"errors"
	"fmt"
	"io"
	"time"

	"im2000/lib/agent"
	"im2000/lib/fail"
	"im2000/lib/session"
	"im2000/lib/trace"
	"im2000/lib/wire/msrap"
)

// ErrDropped marks an entry the Inbox has taken off the pending queue
// itself, with a log line: its store broke the bounds of a retrieval
// (ErrRefused), or it kept failing past maxlifetime (ErrExpired). It is
// not kept for the next run; a store that re-sends the notification
// brings it back as a new attempt.
var ErrDropped = errors.New("dropped from the pending queue")

// ErrRefused is a retrieval its store made unacceptable: a size over the
// limit, a size other than the notification's, more data than the size,
// or a header that cannot be read. It wraps ErrDropped.
var ErrRefused = fmt.Errorf("refused, %w", ErrDropped)

// ErrExpired is an entry that failed once more when it was older than
// maxlifetime. It wraps ErrDropped.
var ErrExpired = fmt.Errorf("older than maxlifetime, %w", ErrDropped)

// The bounds of a retrieval's time and pages: a retrieval of size octets
// has b.timeout + size/MinRate to finish (and ends at the Inbox's deadline
// in any case), and every page but the last brings at least MinPage
// octets. im2000-retrieved serves pages of its -m setting less 4096
// octets (about 1 MiB by default); a store trickling 1-octet pages just
// within the timeout, or hanging up after each, would otherwise hold a
// reader for days.
const (
	MinRate = 64 << 10 // octets a second
	MinPage = 16 << 10 // octets
)

// timeFor is the time a retrieval of size octets may take.
func (b *Inbox) timeFor(size uint64) time.Duration {
	return b.timeout + time.Duration(min(size/MinRate, 1<<32))*time.Second
}

// limit is the most a retrieval of e may bring: the notification's size
// when it states one, and databytes in any case.
func (b *Inbox) limit(e agent.Entry) uint64 {
	l := uint64(max(b.max, 0))
	if s := e.N.Notification.Size; s != nil && *s < l {
		l = *s
	}
	return l
}

// RetrieveTo fetches a message (msrap.All) or its header (msrap.HeadersOnly)
// from the store of a notification whose sender is verified and writes it
// to w with the reader's trace fields on top: Return-Path with the verified
// sender (any Return-Path the store served is removed) and one Received
// naming the store, the identifier and the time. What it writes has CRLF
// line ends. It returns the octets written.
//
// The message is streamed a page at a time: no more than one MSRAP page
// and the header section (at most mailmsg.MaxHeader) is held in memory.
// A store that states a size over limit (the notification's size, and
// databytes), a size for the whole message other than the notification's,
// a size that changes, more data than its size, a page shorter than
// MinPage but the last, or a header that cannot be read, is refused at
// once: the session is dropped, the entry is dropped
// with a log line, and the error wraps ErrRefused. On such an error or any
// other, w may have had part of the message: the caller throws it away.
//
// The retrieval has the timeout and its size at MinRate to finish, and
// ends at the Inbox's deadline (SetDeadline); past that it fails with
// ErrTooSlow and its store's chance ends. An entry that fails and is
// older than maxlifetime is dropped too (ErrExpired). ErrGone is a
// message its store no longer has.
func (b *Inbox) RetrieveTo(e agent.Entry, kind uint64, w io.Writer) (int64, error) {
	sender, err := b.Sender(e)
	if err != nil {
		return 0, err
	}
	n := e.N.Notification
	pg := &pager{b: b, e: e, kind: kind, limit: b.limit(e), start: time.Now()}
	ww := &errWriter{w: w}
	st := trace.Stamp{Sender: sender, Store: n.StoreClear, ID: n.ID, By: b.me, Prog: fail.Name, At: time.Now(), Gateway: trustedGateway(sender)}
	written, err := st.Write(ww, pg, kind == msrap.HeadersOnly)
	switch {
	case pg.refused != "":
		b.dropSession(e)
		return written, b.refuse(e, pg.size, pg.limit, pg.refused)
	case pg.err != nil:
		return written, b.failed(e, pg.err)
	case ww.err != nil:
		return written, fail.Temp(ww.err) // our disk or our client, not the store
	case errors.Is(err, trace.ErrHeader):
		pg.refused = "an unreadable header (" + err.Error() + ")"
		b.dropSession(e)
		return written, b.refuse(e, pg.size, pg.limit, pg.refused)
	case err != nil:
		return written, err
	}
	if pg.off != pg.size {
		// The message ended for the header reader before the store's size:
		// cannot happen with a store that behaves (Write reads to the end).
		b.dropSession(e)
		pg.refused = fmt.Sprintf("%d octets read of %d", pg.off, pg.size)
		return written, b.refuse(e, pg.size, pg.limit, pg.refused)
	}
	return written, nil
}

// pager reads a message from its store a page (one RetrieveOK) at a
// time, checking each page against the bounds.
type pager struct {
	b       *Inbox
	e       agent.Entry
	kind    uint64
	limit   uint64
	page    []byte // what is left of the current page
	off     uint64 // octets received so far
	size    uint64 // the size the store stated first
	started bool
	err     error  // the store failed (transport, protocol, gone)
	refused string // the store broke a bound: why
	start   time.Time
}

// deadline is when the retrieval must end: the timeout and its size at
// MinRate after its start (before the first page, the size is the limit),
// or the Inbox's deadline if that comes first.
func (p *pager) deadline() time.Duration {
	size := p.limit
	if p.started {
		size = p.size
	}
	return time.Until(p.start.Add(p.b.timeFor(size)))
}

func (p *pager) Read(buf []byte) (int, error) {
	for len(p.page) == 0 {
		if p.err != nil || p.refused != "" {
			return 0, errStopped
		}
		if p.started && p.off == p.size {
			return 0, io.EOF
		}
		n := p.e.N.Notification
		r, err := call[*msrap.RetrieveOK](p.b, p.e, &msrap.Retrieve{ID: n.ID, Type: p.kind, Offset: p.off}, p.b.deadline(p.deadline()))
		if err != nil {
			p.err = err
			return 0, errStopped
		}
		switch {
		case r.Size > p.limit:
			p.refused = fmt.Sprintf("a size of %d octets, over the limit of %d", r.Size, p.limit)
		case p.kind == msrap.All && n.Size != nil && r.Size != *n.Size:
			p.refused = fmt.Sprintf("a size of %d octets, not the notification's %d", r.Size, *n.Size)
		case p.started && r.Size != p.size:
			p.refused = fmt.Sprintf("a size of %d octets after %d", r.Size, p.size)
		case uint64(len(r.Data)) > r.Size-p.off:
			p.refused = fmt.Sprintf("%d octets at offset %d of %d", len(r.Data), p.off, r.Size)
		case uint64(len(r.Data)) < min(r.Size-p.off, MinPage):
			p.refused = fmt.Sprintf("a page of %d octets at offset %d of %d (pages are at least %d octets, or the rest)", len(r.Data), p.off, r.Size, MinPage)
		}
		if p.refused != "" {
			p.size = r.Size
			return 0, errStopped
		}
		p.started, p.size = true, r.Size
		p.page = r.Data
		p.off += uint64(len(r.Data))
	}
	k := copy(buf, p.page)
	p.page = p.page[k:]
	if len(p.page) == 0 {
		p.page = nil // let the page go
	}
	return k, nil
}

// errStopped ends the stream for the header reader and the copy; the
// pager's own fields say why.
var errStopped = errors.New("retrieval stopped")

// errWriter remembers the writer's own error, to tell it from the store's.
type errWriter struct {
	w   io.Writer
	err error
}

func (w *errWriter) Write(p []byte) (int, error) {
	n, err := w.w.Write(p)
	if err != nil && w.err == nil {
		w.err = err
	}
	return n, err
}

// refuse drops an entry whose store broke a retrieval's bounds, with one
// log line naming the sender, the store, the identifier and the size
// claimed, and returns the error for the caller.
func (b *Inbox) refuse(e agent.Entry, size, limit uint64, why string) error {
	n := e.N.Notification
	notified := "none"
	if n.Size != nil {
		notified = fmt.Sprint(*n.Size)
	}
	err := fmt.Errorf("MSRAP: %w: the store answered with %s", session.ErrProtocol, why)
	logRefused(b.LogPrefix, &n, size, notified, limit, err)
	b.Done(e)
	return fmt.Errorf("%w: %w", ErrRefused, err)
}

// failed returns a call's error, after dropping the entry if it is older
// than maxlifetime: an entry may fail for as long as a message may live
// at its store, and not longer. ErrGone and refusals are not failures
// here (their callers drop the entry anyway).
func (b *Inbox) failed(e agent.Entry, err error) error {
	if errors.Is(err, ErrGone) || errors.Is(err, ErrDropped) {
		return err
	}
	date := time.Unix(int64(min(e.N.Date, 1<<62)), 0)
	age := b.now().Sub(date)
	if b.life <= 0 || age <= b.life {
		return err
	}
	logExpired(b.LogPrefix, &e.N.Notification, date, b.life, err)
	b.Done(e)
	return fmt.Errorf("%w: %w", ErrExpired, err)
}

// Size is the message's size: from the notification, else asked of the
// store. A store stating a size over databytes is refused (ErrRefused), as
// RetrieveTo would refuse it.
func (b *Inbox) Size(e agent.Entry) (uint64, error) {
	if s := e.N.Notification.Size; s != nil {
		return *s, nil
	}
	r, err := call[*msrap.QuerySizeOK](b, e, &msrap.QuerySize{ID: e.N.Notification.ID}, b.deadline(b.timeout))
	if err != nil {
		return 0, b.failed(e, err)
	}
	if l := b.limit(e); r.Size > l {
		// Not retrievable, now or later: refused before any retrieval.
		return 0, b.refuse(e, r.Size, l, fmt.Sprintf("a size of %d octets, over the limit of %d", r.Size, l))
	}
	return r.Size, nil
}

// Silence tells the store the recipient has the message.
func (b *Inbox) Silence(e agent.Entry) error {
	_, err := call[msrap.SilenceOK](b, e, &msrap.Silence{ID: e.N.Notification.ID}, b.deadline(b.timeout))
	if errors.Is(err, ErrGone) {
		return nil
	}
	if err != nil {
		return b.failed(e, err)
	}
	return nil
}
