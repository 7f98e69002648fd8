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

	"github.com/emersion/go-message/textproto"

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
	// Gateway says the verified sender is an SMTP gateway account the
	// reader trusts (gateway.go): the message's first line then names
	// the SMTP envelope sender, and Received says "via SMTP from" it.
	Gateway bool
	via     string // that sender, "<...>", once read
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
	return fmt.Sprintf("from %s by %s (%s) with MSRAP id %s%s; %s", from, Escape(s.By), s.Prog, s.ID, s.viaComment(), s.At.Format(time.RFC1123Z))
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

// ErrHeader is a message whose header section cannot be read (over
// mailmsg.MaxHeader): a reader refuses it.
var ErrHeader = errors.New("the message's header cannot be read")

// Write is Apply streaming: it reads the message from r and writes the
// result to w, a line at a time. It holds one header line (at most
// mailmsg.MaxHeader) and a copy buffer in memory, never the header
// section as a whole nor a map of its fields, so a header of 300,000
// empty fields costs what one line does; the body is copied as it comes.
// It returns the octets written. An error reading r is returned as it is
// (wrapped); a header over mailmsg.MaxHeader wraps ErrHeader. On an
// error, w may have had part of the message.
//
// The header section is what mailmsg.Read takes for one: the lines up to
// a blank line, or up to the first line that is neither a field nor the
// continuation of one. Its lines are written with CRLF ends, in their
// order, but for every Return-Path field and its continuation lines, and
// the Authentication-Results fields that claim this reader's host or the
// trusted gateway's without being its own (authres.go). A
// CR not before the line's LF, and a NUL, in a header line is written as
// a space: a client that takes a lone CR for a line end (or stops at a
// NUL) must not see a field, such as a second Return-Path, that this
// writer did not.
func (s Stamp) Write(w io.Writer, r io.Reader, headersOnly bool) (int64, error) {
	var t *trimCRLF
	cw := &mailmsg.CountWriter{W: w}
	out := io.Writer(cw)
	if headersOnly {
		// The header's own blank line goes: what MSRAP serves for
		// headersonly has none, and neither does what Apply made of it.
		// The last two octets are held back until the end shows what
		// they are.
		t = &trimCRLF{w: cw}
		out = t
	}
	err := s.write(out, bufio.NewReader(r))
	if t != nil && err == nil {
		err = t.close()
	}
	return cw.N, err
}

func (s Stamp) write(w io.Writer, br *bufio.Reader) error {
	if s.Gateway {
		s.via = viaSMTP(br)
	}
	if _, err := w.Write(s.fields()); err != nil {
		return err
	}
	used := 0          // header octets read, against mailmsg.MaxHeader
	dropping := false  // in a Return-Path field: its continuation lines go too
	var rest io.Reader // the body, starting with a line put back
	ar := arFilter{me: s.By, gateway: s.Gateway && s.via != ""}
	var held []byte // an Authentication-Results field, held until its end (authres.go)
	release := func() error {
		f := held
		held = nil
		if f == nil || !ar.keep(f) {
			return nil
		}
		_, err := w.Write(f)
		return err
	}
	for first := true; ; first = false {
		if peek, _ := br.Peek(1); len(peek) == 0 {
			break
		}
		line, err := readLine(br, mailmsg.MaxHeader-used)
		if err != nil {
			return err
		}
		used += len(line)
		if isBlank(line) {
			break
		}
		cont := !first && (line[0] == ' ' || line[0] == '\t')
		name, field := fieldName(line)
		if !cont && !field {
			// Not header: it starts the body.
			rest = bytes.NewReader(line)
			break
		}
		if !cont {
			if err := release(); err != nil {
				return err
			}
			dropping = strings.EqualFold(name, "Return-Path")
			if ar.field(name) {
				held = []byte{}
			}
		}
		if dropping {
			continue
		}
		if held != nil {
			held = append(held, headerLine(line)...)
			continue
		}
		if _, err := w.Write(headerLine(line)); err != nil {
			return err
		}
	}
	if err := release(); err != nil {
		return err
	}
	if _, err := io.WriteString(w, "\r\n"); err != nil {
		return err
	}
	body := io.Reader(br)
	if rest != nil {
		body = io.MultiReader(rest, br)
	}
	_, err := io.Copy(mailmsg.NewCRLFWriter(w), body)
	return err
}

// fields is the two trace fields, folded as textproto folds a field added
// to a header: Return-Path, then Received.
func (s Stamp) fields() []byte {
	var h textproto.Header
	h.Add("Received", s.Received())
	h.Add("Return-Path", "<"+s.Sender.String()+">") // Add puts a field on top
	var b bytes.Buffer
	textproto.WriteHeader(&b, h) // cannot fail: both values are ours, on one line
	return bytes.TrimSuffix(b.Bytes(), []byte("\r\n"))
}

// readLine reads one line with its end, failing past limit octets.
func readLine(r *bufio.Reader, limit int) ([]byte, error) {
	var line []byte
	for {
		frag, err := r.ReadSlice('\n')
		if len(line)+len(frag) > limit {
			return nil, fmt.Errorf("%w: %w", ErrHeader, mailmsg.ErrHeaderTooLarge)
		}
		line = append(line, frag...)
		switch err {
		case bufio.ErrBufferFull:
			continue
		case nil, io.EOF:
			return line, nil
		}
		return nil, fmt.Errorf("reading the message: %w", err)
	}
}

func isBlank(line []byte) bool { return len(bytes.TrimRight(line, "\r\n")) == 0 }

// fieldName matches "name:" where name is printable ASCII without colon
// (RFC 5322 section 2.2), allowing the blanks before the colon seen in the
// wild, as mailmsg does.
func fieldName(line []byte) (string, bool) {
	i := 0
	for i < len(line) && line[i] >= 33 && line[i] <= 126 && line[i] != ':' {
		i++
	}
	if i == 0 {
		return "", false
	}
	name := line[:i]
	for i < len(line) && (line[i] == ' ' || line[i] == '\t') {
		i++
	}
	return string(name), i < len(line) && line[i] == ':'
}

// headerLine is a header line as written: its LF (and one CR before it)
// made CRLF, any other CR and any NUL made a space.
func headerLine(line []byte) []byte {
	if n := len(line); n > 0 && line[n-1] == '\n' {
		line = line[:n-1]
		if n := len(line); n > 0 && line[n-1] == '\r' {
			line = line[:n-1]
		}
	}
	out := make([]byte, len(line), len(line)+2)
	for i, c := range line {
		if c == '\r' || c == 0 {
			c = ' '
		}
		out[i] = c
	}
	return append(out, '\r', '\n')
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
