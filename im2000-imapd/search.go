package main

// SEARCH, from the state and, for header fields, the header.

import (
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
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
	var seqs imap.SeqSet
	var uids imap.UIDSet
	data := &imap.SearchData{}
	for i, m := range s.view {
		if m.gone {
			continue
		}
		ok, err := s.match(uint32(i+1), m, c)
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

func (s *imapSession) match(seq uint32, m *viewMsg, c *imap.SearchCriteria) (bool, error) {
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
		f := s.cache.open(m.name, "all")
		if f == nil {
			f = s.cache.open(m.name, "hdr")
		}
		if f == nil {
			return false, imapErr(imap.ResponseCodeCannot, "SEARCH HEADER covers only messages whose header was fetched (FETCH ENVELOPE or BODY.PEEK[HEADER] first): a search must not tell their senders they were read")
		}
		raw := make([]byte, 256<<10)
		n, _ := f.Read(raw)
		f.Close()
		head := strings.ToLower(string(raw[:n]))
		for _, h := range c.Header {
			if !headerMatch(head, strings.ToLower(h.Key), strings.ToLower(h.Value)) {
				return false, nil
			}
		}
	}
	for i := range c.Not {
		ok, err := s.match(seq, m, &c.Not[i])
		if err != nil || ok {
			return false, err
		}
	}
	for i := range c.Or {
		a, err := s.match(seq, m, &c.Or[i][0])
		if err != nil {
			return false, err
		}
		b, err := s.match(seq, m, &c.Or[i][1])
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

// headerMatch reports whether a field named key contains value (both
// lower case), unfolded lines ignored: a simple substring test of each
// "key:" line, as RFC 9051 allows.
func headerMatch(head, key, value string) bool {
	for _, line := range strings.Split(head, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == key && strings.Contains(v, value) {
			return true
		}
	}
	return false
}
