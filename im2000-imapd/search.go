package main

// SEARCH, from the state and, for header fields, the header.

import (
	"bufio"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-message/textproto"
)

// Search matches flags, sequence numbers, UIDs, sizes and dates from the
// state; header fields from the cached header only: a retrieval for a
// search would tell every sender "readheaders" though the user read
// nothing. A HEADER search that reaches a message whose header was never
// fetched is refused (NO [CANNOT]), as are BODY and TEXT, which would
// fetch every message from its store.
func (s *imapSession) Search(kind imapserver.NumKind, c *imap.SearchCriteria, _ *imap.SearchOptions) (*imap.SearchData, error) {
	if needsBody(c) {
		return nil, imapErr(imap.ResponseCodeCannot, "SEARCH BODY and TEXT are not offered: every message would be fetched from its sender's store")
	}
	lowerHeaders(c)
	if work := searchWork(c) * len(s.view); work > maxSearchWork {
		return nil, imapErr(imap.ResponseCodeLimit, fmt.Sprintf("this SEARCH would test %d keys against %d messages: at most %d tests, search fewer messages or with fewer keys", searchWork(c), len(s.view), maxSearchWork))
	}
	var seqs imap.SeqSet
	var uids imap.UIDSet
	data := &imap.SearchData{}
	for i, m := range s.view {
		if m.gone {
			continue
		}
		ok, err := s.match(uint32(i+1), m, c, &msgHeader{s: s, m: m})
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		n := uint32(i + 1)
		if kind == imapserver.NumKindUID {
			n = uint32(m.uid)
			uids.AddNum(m.uid)
		} else {
			seqs.AddNum(n)
		}
		if data.Min == 0 || n < data.Min {
			data.Min = n
		}
		data.Max = max(data.Max, n)
		data.Count++
	}
	if kind == imapserver.NumKindUID {
		data.All = uids
	} else {
		data.All = seqs
	}
	return data, nil
}

func needsBody(c *imap.SearchCriteria) bool {
	if len(c.Body) > 0 || len(c.Text) > 0 {
		return true
	}
	for i := range c.Not {
		if needsBody(&c.Not[i]) {
			return true
		}
	}
	for i := range c.Or {
		if needsBody(&c.Or[i][0]) || needsBody(&c.Or[i][1]) {
			return true
		}
	}
	return false
}

// maxSearchWork bounds the keys times the messages one SEARCH tests:
// within the 50 KiB of a command, thousands of keys (NOT HEADER X y ...)
// against every message would take one session's CPU for minutes.
const maxSearchWork = 1 << 21

// maxHeaderRead bounds what is read of a cached message for its header.
const maxHeaderRead = 256 << 10

// searchWork counts the keys of a search, nested ones included, and
// each range of a sequence or UID set as one: a set is tested range by
// range (8,926 ranges in one key cost 80 times the bound; issue 19,
// third review).
func searchWork(c *imap.SearchCriteria) int {
	n := 1 + len(c.Header) + len(c.Flag) + len(c.NotFlag)
	for _, set := range c.SeqNum {
		n += max(1, len(set))
	}
	for _, set := range c.UID {
		n += max(1, len(set))
	}
	for i := range c.Not {
		n += searchWork(&c.Not[i])
	}
	for i := range c.Or {
		n += searchWork(&c.Or[i][0]) + searchWork(&c.Or[i][1])
	}
	return n
}

// lowerHeaders puts the HEADER keys' names and values in lower case,
// once for all the messages they test.
func lowerHeaders(c *imap.SearchCriteria) {
	for i := range c.Header {
		c.Header[i].Key, c.Header[i].Value = strings.ToLower(c.Header[i].Key), strings.ToLower(c.Header[i].Value)
	}
	for i := range c.Not {
		lowerHeaders(&c.Not[i])
	}
	for i := range c.Or {
		lowerHeaders(&c.Or[i][0])
		lowerHeaders(&c.Or[i][1])
	}
}

// msgHeader is one message's header fields, read from the cache once per
// SEARCH however many HEADER keys test it: the field names and values in
// lower case, values unfolded.
type msgHeader struct {
	s      *imapSession
	m      *viewMsg
	fields map[string][]string
	err    error
}

func (h *msgHeader) get() (map[string][]string, error) {
	if h.fields != nil || h.err != nil {
		return h.fields, h.err
	}
	f := h.s.cache.open(h.m.name, "all")
	if f == nil {
		f = h.s.cache.open(h.m.name, "hdr")
	}
	if f == nil {
		h.err = imapErr(imap.ResponseCodeCannot, "SEARCH HEADER covers only messages whose header was fetched (FETCH ENVELOPE or BODY.PEEK[HEADER] first): a search must not tell their senders they were read")
		return nil, h.err
	}
	defer f.Close()
	// The header ends at its blank line: the body's lines are no fields.
	head, _ := textproto.ReadHeader(bufio.NewReader(io.LimitReader(f, maxHeaderRead)))
	h.fields = map[string][]string{}
	for fs := head.Fields(); fs.Next(); {
		k := strings.ToLower(fs.Key())
		h.fields[k] = append(h.fields[k], strings.ToLower(fs.Value()))
	}
	return h.fields, nil
}

func (s *imapSession) match(seq uint32, m *viewMsg, c *imap.SearchCriteria, h *msgHeader) (bool, error) {
	for _, set := range c.SeqNum {
		for i := range set {
			static(&set[i].Start, &set[i].Stop, uint32(len(s.view)))
		}
		if !set.Contains(seq) {
			return false, nil
		}
	}
	for _, set := range c.UID {
		last := uint32(0)
		if len(s.view) > 0 {
			last = uint32(s.view[len(s.view)-1].uid)
		}
		for i := range set {
			static((*uint32)(&set[i].Start), (*uint32)(&set[i].Stop), last)
		}
		if !set.Contains(m.uid) {
			return false, nil
		}
	}
	for _, f := range c.Flag {
		if !hasFlagFold(m.flags, f) {
			return false, nil
		}
	}
	for _, f := range c.NotFlag {
		if hasFlagFold(m.flags, f) {
			return false, nil
		}
	}
	if c.Larger > 0 && m.size <= c.Larger || c.Smaller > 0 && m.size >= c.Smaller {
		return false, nil
	}
	date := dateOf(m.date)
	for _, r := range []struct{ since, before time.Time }{{c.Since, c.Before}, {c.SentSince, c.SentBefore}} {
		day := time.Date(date.Year(), date.Month(), date.Day(), 0, 0, 0, 0, time.UTC)
		if !r.since.IsZero() && day.Before(r.since) || !r.before.IsZero() && !day.Before(r.before) {
			return false, nil
		}
	}
	if len(c.Header) > 0 {
		fields, err := h.get()
		if err != nil {
			return false, err
		}
		for _, k := range c.Header {
			if !headerMatch(fields[k.Key], k.Value) {
				return false, nil
			}
		}
	}
	for i := range c.Not {
		ok, err := s.match(seq, m, &c.Not[i], h)
		if err != nil || ok {
			return false, err
		}
	}
	for i := range c.Or {
		a, err := s.match(seq, m, &c.Or[i][0], h)
		if err != nil {
			return false, err
		}
		b, err := s.match(seq, m, &c.Or[i][1], h)
		if err != nil {
			return false, err
		}
		if !a && !b {
			return false, nil
		}
	}
	return true, nil
}

func hasFlagFold(flags []imap.Flag, f imap.Flag) bool {
	for _, g := range flags {
		if equalFold(string(g), string(f)) {
			return true
		}
	}
	return false
}

// headerMatch reports whether one of a field's values contains value
// (both lower case), as RFC 9051 asks; an empty value matches a field
// that is there.
func headerMatch(values []string, value string) bool {
	for _, v := range values {
		if strings.Contains(v, value) {
			return true
		}
	}
	return false
}
