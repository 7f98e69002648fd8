package main

// FETCH: flags, sizes and dates come from the state; everything of the
// message itself from its sender's store, through the cache (cache.go).
// The header alone (ENVELOPE, BODY[HEADER], BODY[HEADER.FIELDS ...],
// RFC822.HEADER, and BODYSTRUCTURE while the body was never fetched) is a
// headersonly retrieval, so the sender sees "readheaders"; anything of the
// body is an "all" retrieval ("readall"). A body section without .PEEK,
// RFC822 and RFC822.TEXT set \Seen.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-message/textproto"

	"im2000/lib/inbox"
	"im2000/lib/wire/msrap"
)

// maxContent bounds what a section is cut from in memory: a message is
// at most databytes (16 MiB by default) plus the trace fields.
const maxContent = 1 << 30

// each calls f for the messages of numSet in the session's view, in
// order, skipping those expunged elsewhere.
func (s *imapSession) each(numSet imap.NumSet, f func(seq uint32, m *viewMsg) error) error {
	switch set := numSet.(type) {
	case imap.SeqSet:
		max := uint32(len(s.view))
		for i := range set {
			static(&set[i].Start, &set[i].Stop, max)
		}
		for i, m := range s.view {
			if !m.gone && set.Contains(uint32(i+1)) {
				if err := f(uint32(i+1), m); err != nil {
					return err
				}
			}
		}
	case imap.UIDSet:
		max := uint32(0)
		if len(s.view) > 0 {
			max = uint32(s.view[len(s.view)-1].uid)
		}
		for i := range set {
			static((*uint32)(&set[i].Start), (*uint32)(&set[i].Stop), max)
		}
		for i, m := range s.view {
			if !m.gone && set.Contains(m.uid) {
				if err := f(uint32(i+1), m); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// static replaces "*" (0) by the largest number in the mailbox.
func static(start, stop *uint32, max uint32) {
	dyn := *start == 0 || *stop == 0
	if *start == 0 {
		*start = max
	}
	if *stop == 0 {
		*stop = max
	}
	if dyn && *start > *stop {
		*start, *stop = *stop, *start
	}
}

// errStore is a message its store could not serve now; it stays.
var errStore = errors.New("store unavailable")

// content returns the message (full) or at least its header, from the
// cache or else from its store; header says the file is a headersonly
// retrieval (a header without its blank line).
func (s *imapSession) content(m *viewMsg, full bool) (f *os.File, header bool, err error) {
	if f := s.cache.open(m.name, "all"); f != nil {
		return f, false, nil
	}
	if !full {
		if f := s.cache.open(m.name, "hdr"); f != nil {
			return f, true, nil
		}
	}
	e, ok := s.entry(m.name)
	if !ok { // expunged by another session meanwhile
		return nil, false, imapErr(imap.ResponseCodeNonExistent, "that message has just been expunged")
	}
	kind, name := uint64(msrap.HeadersOnly), "hdr"
	if full {
		kind, name = msrap.All, "all"
	}
	f, err = s.cache.put(m.name, name, func(w io.Writer) (int64, error) {
		if full {
			return s.mb.RetrieveTo(e, kind, w)
		}
		// A store's headersonly answer is kept up to the header's end:
		// what a hostile one sends after it (a body of nested parts)
		// never reaches the cache, a section or a structure.
		hc := &headerCut{w: w, start: true}
		_, err := s.mb.RetrieveTo(e, kind, hc)
		return hc.n, err
	})
	switch {
	case err == nil:
		return f, !full, nil
	case errors.Is(err, inbox.ErrGone), errors.Is(err, inbox.ErrDropped):
		// Gone from its store (or dropped by lib/inbox, which logged why):
		// it leaves the mailbox, and every session is told at its next poll.
		if errors.Is(err, inbox.ErrGone) {
			s.mb.Done(e)
		}
		logGone(s.peer, s.user, m.name, err)
		s.forget(m.name)
		return nil, false, imapErr(imap.ResponseCodeNonExistent, "that message is gone from its store (cancelled or expired)")
	default:
		logRetrieveFailed(s.peer, s.user, e.N.Notification.ID.String(), err)
		return nil, false, errStore
	}
}

// recordSize keeps the octets of a message's first whole retrieval as its
// RFC822.SIZE, for every session and for good: the notification's size
// lacks the reader's trace fields (and the line ends it makes CRLF), and a
// later retrieval (the cache evicted) must not change the size a client
// was told (RFC 9051 2.3.4). The first recorded wins. It goes to the
// sizes journal (sizes.go), O(1); only when the state changed since the
// view's version (or the journal is full) is the state rewritten.
func (s *imapSession) recordSize(m *viewMsg, n int64) {
	lock, err := lockUser(s.dir)
	if err != nil {
		logStateFailed(s.peer, s.user, err)
		return
	}
	size, mine, from, to, err := appendSize(s.dir, s.validity, m, n, s.seen)
	lock.Close()
	switch {
	case err == nil:
		m.size, m.exact = size, true
		if mine && from == s.seen.jsize {
			// No one appended since the view's version: the view has
			// every line, this one included.
			s.seen.jsize = to
		}
		return
	case !errors.Is(err, errFold):
		logStateFailed(s.peer, s.user, err)
		return
	}
	_, _, err = lockedUpdate(s.dir, func(state *mboxState) (bool, error) {
		r := state.record(m)
		if r == nil || state.UIDValidity != s.validity {
			return false, nil
		}
		if !r.Exact {
			r.Size, r.Exact = n, true
			m.size, m.exact = n, true
			return true, nil
		}
		m.size, m.exact = r.Size, true
		return false, nil
	})
	if err != nil { // the size stays the notification's for now
		logStateFailed(s.peer, s.user, err)
	}
}

// forget removes a record from the state (the entry is off the queue).
func (s *imapSession) forget(name string) {
	lockedUpdate(s.dir, func(st *mboxState) (bool, error) {
		for i := range st.Msgs {
			if st.Msgs[i].Name == name {
				st.Msgs = append(st.Msgs[:i], st.Msgs[i+1:]...)
				return true, nil
			}
		}
		return false, nil
	})
	s.cache.remove(name)
}

// needs says what a FETCH needs of the message: its header, the whole of
// it, and whether it sets \Seen.
func needs(o *imap.FetchOptions) (header, full, seen bool) {
	header = o.Envelope || o.BodyStructure != nil
	for _, sec := range o.BodySection {
		if len(sec.Part) == 0 && sec.Specifier == imap.PartSpecifierHeader {
			header = true
		} else {
			full = true
		}
		seen = seen || !sec.Peek
	}
	for _, sec := range o.BinarySection {
		full, seen = true, seen || !sec.Peek
	}
	if len(o.BinarySectionSize) > 0 {
		full = true
	}
	return header, full, seen
}

func (s *imapSession) Fetch(w *imapserver.FetchWriter, numSet imap.NumSet, o *imap.FetchOptions) error {
	wantHeader, wantFull, setsSeen := needs(o)
	deepest, levels := sectionLevels(o)
	if deepest > maxNesting+1 {
		return imapErr(imap.ResponseCodeCannot, fmt.Sprintf("parts nested deeper than %d are not told apart (BODYSTRUCTURE shows them as one)", maxNesting))
	}
	if levels > maxSectionLevels {
		return imapErr(imap.ResponseCodeLimit, fmt.Sprintf("these sections have %d levels in all (each a scan of the message): at most %d in one FETCH, ask in several", levels, maxSectionLevels))
	}
	setsSeen = setsSeen && !s.readOnly // EXAMINE
	var seen []*viewMsg
	failed := 0
	err := s.each(numSet, func(seq uint32, m *viewMsg) error {
		var data []byte // the whole message, or the header and a blank line
		var file *os.File
		isHeader := false
		// The structure computed from the whole message before: no need
		// to read the message again when nothing else wants it.
		bs := s.cache.structure(m.name)
		onlyStructure := bs != nil && !wantFull && !o.Envelope && len(o.BodySection) == 0
		if (wantHeader || wantFull) && !onlyStructure {
			f, hdr, err := s.content(m, wantFull)
			if errors.Is(err, errStore) {
				failed++
				return nil
			}
			if err != nil {
				var ie *imap.Error
				if errors.As(err, &ie) && ie.Code == imap.ResponseCodeNonExistent {
					failed++
					return nil
				}
				return err
			}
			defer f.Close()
			file, isHeader = f, hdr
			raw, err := io.ReadAll(io.LimitReader(f, maxContent))
			if err != nil {
				return tempError(s.peer, err)
			}
			if hdr {
				raw = append(raw, "\r\n"...)
			}
			data = raw
			// A multipart message's structure is in its body: the header
			// alone cannot give it, so BODYSTRUCTURE fetches the whole.
			if o.BodyStructure != nil && hdr && !headerGivesStructure(data) {
				f.Close()
				f, _, err := s.content(m, true)
				if err != nil {
					if errors.Is(err, errStore) {
						failed++
						return nil
					}
					return err
				}
				defer f.Close()
				if data, err = io.ReadAll(io.LimitReader(f, maxContent)); err != nil {
					return tempError(s.peer, err)
				}
				isHeader = false
			}
		}
		_ = file
		if !isHeader && data != nil && !m.exact {
			s.recordSize(m, int64(len(data)))
		}
		if setsSeen && !hasFlag(m.flags, imap.FlagSeen) {
			m.flags = append(m.flags, imap.FlagSeen)
			seen = append(seen, m)
		}
		r := w.CreateMessage(seq)
		if o.UID {
			r.WriteUID(m.uid)
		}
		if o.Flags || setsSeen {
			r.WriteFlags(m.flags)
		}
		if o.RFC822Size {
			r.WriteRFC822Size(m.size)
		}
		if o.InternalDate {
			r.WriteInternalDate(dateOf(m.date))
		}
		if o.Envelope {
			h, _ := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(data)))
			r.WriteEnvelope(imapserver.ExtractEnvelope(h))
		}
		if o.BodyStructure != nil {
			if bs == nil {
				bs = bodyStructure(data)
				if !isHeader {
					s.cache.keepStructure(m.name, bs)
				}
			}
			r.WriteBodyStructure(bs)
		}
		for _, sec := range o.BodySection {
			b := imapserver.ExtractBodySection(bytes.NewReader(data), sec)
			bw := r.WriteBodySection(sec, int64(len(b)))
			bw.Write(b)
			bw.Close()
		}
		for _, sec := range o.BinarySection {
			b := imapserver.ExtractBinarySection(bytes.NewReader(data), sec)
			bw := r.WriteBinarySection(sec, int64(len(b)))
			bw.Write(b)
			bw.Close()
		}
		for _, sec := range o.BinarySectionSize {
			r.WriteBinarySectionSize(sec, imapserver.ExtractBinarySectionSize(bytes.NewReader(data), sec))
		}
		return r.Close()
	})
	if len(seen) > 0 {
		if err := s.storeFlags(seen, imap.StoreFlagsAdd, []imap.Flag{imap.FlagSeen}); errors.Is(err, errStale) {
			return errStale
		} else if err != nil {
			return tempError(s.peer, err)
		}
	}
	if err != nil {
		return err
	}
	if failed > 0 {
		return imapErr(imap.ResponseCodeUnavailable, fmt.Sprintf("%d messages could not be fetched from their senders' stores now; they stay, try again later", failed))
	}
	return nil
}

func hasFlag(flags []imap.Flag, f imap.Flag) bool {
	for _, g := range flags {
		if g == f {
			return true
		}
	}
	return false
}

// sectionLevels returns the deepest section's levels and the levels of
// all sections (one for a section of the whole message): each section is
// cut from the whole message, one more scan of it per level.
func sectionLevels(o *imap.FetchOptions) (deepest, total int) {
	add := func(part []int) {
		deepest, total = max(deepest, len(part)), total+len(part)+1
	}
	for _, sec := range o.BodySection {
		add(sec.Part)
	}
	for _, sec := range o.BinarySection {
		add(sec.Part)
	}
	for _, sec := range o.BinarySectionSize {
		add(sec.Part)
	}
	return deepest, total
}

// maxSectionLevels bounds the levels of the sections of one FETCH: 780
// BINARY.SIZE sections 25 levels deep walked a 1 MiB message 19,500
// times over, four seconds a command (issue 19, third review). A client
// asks for a part or a few, and their MIME headers, at a time; 256
// levels of a 16 MiB message (databytes' default) take under a second.
const maxSectionLevels = 256
