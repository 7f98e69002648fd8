package trace

import (
	"bytes"
	"strings"
)

// Authentication-Results fields (RFC 8601) say what a host checked, under
// its authserv-id. Section 5: a host must not believe, and should remove,
// fields that claim its own authserv-id and that it did not write. Anyone
// can write such a field into a message (an IM2000 sender, a list poster),
// so a reader removes every one naming its own host (Stamp.By) but, in a
// message from a trusted SMTP gateway, the gateway's own field: the first
// Authentication-Results, written as the third field, right under the
// gateway's Return-Path and Received (im2000-gatewayd). Any later field
// with the gateway's authserv-id is removed too: the gateway removes those
// from what it takes, so one here was put in after it.

// AuthservID is the first word of an Authentication-Results value (RFC
// 8601 section 2.2: the authserv-id, a token or a quoted string), after
// any comments before it. It is read by hand, not with authres.Parse: a
// field too broken to parse must still be recognised as claiming a host,
// and the first word is all that is needed.
func AuthservID(v string) string {
	v = strings.TrimLeft(v, " \t\r\n")
	for strings.HasPrefix(v, "(") {
		_, rest, ok := strings.Cut(v, ")")
		if !ok {
			return ""
		}
		v = strings.TrimLeft(rest, " \t\r\n")
	}
	if q, ok := strings.CutPrefix(v, `"`); ok {
		id, _, closed := strings.Cut(q, `"`)
		if !closed {
			// Unterminated: read as a token, so that "ME.example\r\n
			// claims this host as a lenient reader would take it (found
			// by FuzzStampWrite: the line end made it nobody's).
			if i := strings.IndexAny(id, "; \t\r\n("); i >= 0 {
				id = id[:i]
			}
		}
		return id
	}
	if i := strings.IndexAny(v, "; \t\r\n("); i >= 0 {
		v = v[:i]
	}
	return v
}

// arFilter decides, a field at a time, which Authentication-Results
// fields of a header a reader keeps.
type arFilter struct {
	me      string   // the reader's authserv-id (Stamp.By)
	gateway bool     // the message is from a trusted gateway, via read
	names   []string // the names of the first two fields, for the gateway's layout
	fields  int      // fields seen so far
	gwID    string   // the gateway's authserv-id, from its own field
}

// keep says whether the whole field f (name, value and continuation
// lines), the n-th of the header counting from 1, stays.
func (a *arFilter) keep(f []byte) bool {
	_, v, _ := bytes.Cut(f, []byte(":"))
	id := AuthservID(string(v))
	if a.gateway && a.fields == 3 && a.gwID == "" && len(a.names) == 2 &&
		strings.EqualFold(a.names[0], "Return-Path") && strings.EqualFold(a.names[1], "Received") {
		a.gwID = id
		if id == "" {
			a.gwID = "\x00" // nothing later can match it
		}
		return true
	}
	if id == "" {
		return true // claims no one
	}
	return !strings.EqualFold(id, a.me) && !strings.EqualFold(id, a.gwID)
}

// field notes the start of a field named name; it says whether it is an
// Authentication-Results field, to be held until its end for keep.
func (a *arFilter) field(name string) bool {
	a.fields++
	if len(a.names) < 2 {
		a.names = append(a.names, name)
	}
	return strings.EqualFold(name, "Authentication-Results")
}
