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
// any comments before it (RFC 5322 CFWS: comments nest, and hold
// quoted-pairs such as "\)"). It is read by hand, not with authres.Parse:
// a field too broken to parse must still be recognised as claiming a host,
// and the first word is all that is needed. ok is false when the value
// cannot be read so (a comment or a quoted string not closed, no word at
// all, or a non-ASCII octet in it or right after it: see nonASCII):
// Claims takes such a field as claiming every host, since another reader
// may well read a name into it.
func AuthservID(v string) (id string, ok bool) {
	v, ok = skipCFWS(v)
	if !ok {
		return "", false
	}
	if q, quoted := strings.CutPrefix(v, `"`); quoted {
		var b strings.Builder
		for i := 0; i < len(q); i++ {
			switch c := q[i]; c {
			case '"':
				return b.String(), b.Len() > 0 && !nonASCII(b.String(), q[i+1:])
			case '\\':
				if i+1 == len(q) {
					return b.String(), false
				}
				i++
				b.WriteByte(q[i])
			case '\r', '\n':
				// A folding line end is not part of the quoted string.
			default:
				b.WriteByte(c)
			}
		}
		// Unterminated: read as a token, for what it names (found by
		// FuzzStampWrite: "ME.example\r\n was nobody's); it claims
		// every host anyway.
		return token(q), false
	}
	id = token(v)
	return id, id != "" && !nonASCII(id, v[len(id):])
}

// nonASCII says whether the id, or the octet right after it, is not
// ASCII. A Unicode-aware reader takes U+00A0, U+2003, U+3000 and the other
// non-ASCII spaces for white space that ends the id (go-msgauth's
// authres.Parse reads "example.org\u00a0; dkim=pass" as example.org's), so
// such an id is not read as a name at all: a field so spelt claims every
// host and is removed (second hostile review of issue 20). A name in UTF-8
// is lost with it; authserv-ids are host names, in practice ASCII.
func nonASCII(id, after string) bool {
	for i := 0; i < len(id); i++ {
		if id[i] >= 0x80 {
			return true
		}
	}
	return after != "" && after[0] >= 0x80
}

// tokenEnd are the octets that end a token (RFC 2045's tspecials, space
// and controls): a reader that stops at any of them reads no longer a name
// than this one does.
const tokenEnd = "()<>@,;:\\\"/[]?= \t\r\n\x00"

func token(v string) string {
	for i := 0; i < len(v); i++ {
		if v[i] < ' ' || v[i] == 127 || strings.IndexByte(tokenEnd, v[i]) >= 0 {
			return v[:i]
		}
	}
	return v
}

// skipCFWS skips white space, line ends and comments (nested, with
// quoted-pairs) at the start of v; ok is false for a comment not closed.
func skipCFWS(v string) (rest string, ok bool) {
	for {
		v = strings.TrimLeft(v, " \t\r\n\x00")
		if !strings.HasPrefix(v, "(") {
			return v, true
		}
		depth := 0
		i := 0
		for ; i < len(v); i++ {
			switch v[i] {
			case '\\':
				i++ // a quoted-pair: the next octet is text
			case '(':
				depth++
			case ')':
				depth--
			}
			if depth == 0 {
				break
			}
		}
		if depth != 0 || i >= len(v) {
			return "", false
		}
		v = v[i+1:]
	}
}

// Claims says whether the Authentication-Results value v claims the
// authserv-id host: its authserv-id is host, in any case and with or
// without a final dot, or it has none that can be read.
func Claims(v, host string) bool {
	id, ok := AuthservID(v)
	return !ok || strings.EqualFold(strings.TrimRight(id, "."), strings.TrimRight(host, "."))
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
	_, b, _ := bytes.Cut(f, []byte(":"))
	v := string(b)
	if a.gateway && a.fields == 3 && a.gwID == "" && len(a.names) == 2 &&
		strings.EqualFold(a.names[0], "Return-Path") && strings.EqualFold(a.names[1], "Received") {
		a.gwID = "\x00" // unreadable: nothing later can match it
		if id, ok := AuthservID(v); ok {
			a.gwID = id
		}
		return true
	}
	return !Claims(v, a.me) && (a.gwID == "" || !Claims(v, a.gwID))
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
