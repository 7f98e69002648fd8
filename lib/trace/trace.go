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
	"errors"
	"fmt"
	"io"
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
// Apply is Write on a message held in memory.
func (s Stamp) Apply(msg []byte, headersOnly bool) ([]byte, error) {
	var out bytes.Buffer
	out.Grow(len(msg) + 300)
	if _, err := s.Write(&out, bytes.NewReader(msg), headersOnly); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// ErrHeader is a message whose header section cannot be read (malformed,
// or over mailmsg.MaxHeader): a reader refuses it.
var ErrHeader = errors.New("the message's header cannot be read")

// Write is Apply streaming: it reads the message from r and writes the
// result to w, holding no more than the header section (at most
// mailmsg.MaxHeader) and a copy buffer in memory; the body is copied as
// it comes. It returns the octets written. An error reading r is returned
// as it is (wrapped); a header that cannot be read wraps ErrHeader.
func (s Stamp) Write(w io.Writer, r io.Reader, headersOnly bool) (int64, error) {
	m, err := mailmsg.Read(bufio.NewReader(r))
	if err != nil {
		if errors.Is(err, mailmsg.ErrHeaderTooLarge) || errors.Is(err, mailmsg.ErrBadHeader) {
			return 0, fmt.Errorf("%w: %w", ErrHeader, err)
		}
		return 0, fmt.Errorf("reading the message: %w", err)
	}
	m.Header.Del("Return-Path")
	// Add puts a field on top: Received first, then Return-Path above it.
	m.Header.Add("Received", s.Received())
	m.Header.Add("Return-Path", "<"+s.Sender.String()+">")
	if !headersOnly {
		return m.WriteTo(w)
	}
	// The header's own blank line goes: what MSRAP serves for headersonly
	// has none, and neither does what Apply made of it. The last two
	// octets are held back until the end shows what they are.
	t := &trimCRLF{w: w}
	if _, err := m.WriteTo(t); err != nil {
		return t.n, err
	}
	return t.n, t.close()
}

// trimCRLF writes all but a final CRLF.
type trimCRLF struct {
	w    io.Writer
	held []byte // at most the last two octets seen
	n    int64  // octets passed on
	err  error
}

func (t *trimCRLF) Write(p []byte) (int, error) {
	if t.err != nil {
		return 0, t.err
	}
	all := append(t.held, p...)
	keep := min(2, len(all))
	out := all[:len(all)-keep]
	if len(out) > 0 {
		n, err := t.w.Write(out)
		t.n += int64(n)
		if err != nil {
			t.err = err
			return 0, err
		}
	}
	t.held = append([]byte(nil), all[len(all)-keep:]...)
	return len(p), nil
}

func (t *trimCRLF) close() error {
	if t.err != nil || string(t.held) == "\r\n" || len(t.held) == 0 {
		return t.err
	}
	n, err := t.w.Write(t.held)
	t.n += int64(n)
	return err
}
