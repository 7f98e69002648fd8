// Package trace is what a reader (im2000-fetch, im2000-pop3d, any later
// reading shim) writes about where a message came from, and how it shows
// text it did not write.
//
// Every message a reader delivers starts with two fields of its own
// (DESIGN.md section 3, "Sender binding"): Return-Path with the verified
// sender, and one Received field naming the store it was retrieved from,
// its identifier there and the time. Any Return-Path the store served is
// removed: only the reader knows whom it verified.
//
// Escape is the one way untrusted text (a notification's sender, a store
// location, a store's words) reaches a log line or a terminal.
package trace

import (
	"bufio"
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"im2000/lib/addr"
	"im2000/lib/mailmsg"
	"im2000/lib/msgid"
	"im2000/lib/wire"
)

// Escape makes s safe to print on one line: control characters (C0, DEL,
// C1, and the other characters Go does not call printable, such as bidi
// overrides), invalid UTF-8 and the backslash are written as Go escapes
// (\n, \x1b, \u202e, \\); everything else is kept.
func Escape(s string) string {
	clean := true
	for _, r := range s {
		if r == '\\' || r == utf8.RuneError || !unicode.IsPrint(r) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\\':
			b.WriteString(`\\`)
		case unicode.IsPrint(r):
			b.WriteString(s[i : i+n])
		default:
			q := strconv.QuoteRuneToASCII(r)
			b.WriteString(q[1 : len(q)-1])
		}
		i += n
	}
	return b.String()
}

// Stamp describes one retrieval, for the trace fields.
type Stamp struct {
	Sender addr.Mailbox         // the verified sender
	Store  wire.ServiceLocation // where the message was retrieved
	ID     msgid.ID             // its identifier there
	By     string               // the reader's host (the me setting)
	Prog   string               // the reading program
	At     time.Time            // when
}

// Received is the Received field's value (RFC 5321 section 4.4, with
// RFC 5322's date-time): "from STORE by ME (PROG) with MSRAP id ID; DATE".
// A store given by addresses is named by its first one as an address
// literal, and all of them, with ports, in a comment.
func (s Stamp) Received() string {
	var from string
	if s.Store.Domain != nil || len(s.Store.Literals) == 0 {
		from = Escape(s.Store.String())
	} else {
		a := s.Store.Literals[0].Addr().Unmap()
		lit := "[" + a.String() + "]"
		if a.Is6() {
			lit = "[IPv6:" + a.String() + "]"
		}
		from = fmt.Sprintf("%s (%s) (store %s)", lit, lit, s.Store.String())
	}
	return fmt.Sprintf("from %s by %s (%s) with MSRAP id %s; %s", from, Escape(s.By), s.Prog, s.ID, s.At.Format(time.RFC1123Z))
}

// Apply puts the trace fields on top of msg (a whole message, or with
// headersOnly a header section without its blank line, as MSRAP serves
// them) and removes every Return-Path field the store's copy has. The
// result has CRLF line ends. The header section ends, as mailmsg reads it,
// at the blank line or at the first line that cannot be a header field.
func (s Stamp) Apply(msg []byte, headersOnly bool) ([]byte, error) {
	m, err := mailmsg.Read(bufio.NewReader(bytes.NewReader(msg)))
	if err != nil {
		return nil, fmt.Errorf("the message's header cannot be read: %w", err)
	}
	m.Header.Del("Return-Path")
	// Add puts a field on top: Received first, then Return-Path above it.
	m.Header.Add("Received", s.Received())
	m.Header.Add("Return-Path", "<"+s.Sender.String()+">")
	var out bytes.Buffer
	out.Grow(len(msg) + 300)
	if _, err := m.WriteTo(&out); err != nil {
		return nil, err
	}
	b := out.Bytes()
	if headersOnly {
		b = bytes.TrimSuffix(b, []byte("\r\n")) // the header's own blank line
	}
	return b, nil
}
