// Package mailmsg prepares a message as a mail user agent hands it over: it
// splits off the header, finds the recipients named in it, adds the fields
// a submitted message must have (From, Date, Message-ID), drops Bcc, and
// writes the result in canonical form (CRLF line ends), the form the store
// keeps and serves.
package mailmsg

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"

	"im2000/lib/addr"
)

// MaxHeader bounds the header section a message may have.
const MaxHeader = 1 << 20

// Errors about the message itself, as opposed to errors reading it.
var (
	ErrHeaderTooLarge = errors.New("header section larger than 1 MiB")
	ErrBadHeader      = errors.New("bad header")
	ErrBadAddress     = errors.New("bad address")
)

// Message is a message whose header has been read and whose body is still
// to be read.
type Message struct {
	Header mail.Header
	Body   *bufio.Reader
}

// Read reads the header section. Like sendmail, it takes the header to end
// at a blank line or at the first line that cannot be a header field, so
// that a bare text piped in becomes a body rather than an error.
func Read(r *bufio.Reader) (*Message, error) {
	var block bytes.Buffer
	for first := true; ; first = false {
		peek, _ := r.Peek(1)
		if len(peek) == 0 {
			break
		}
		line, err := readLine(r, MaxHeader-block.Len())
		if err != nil {
			return nil, err
		}
		if isBlank(line) {
			break
		}
		if !(!first && (line[0] == ' ' || line[0] == '\t') || isFieldStart(line)) {
			// Not header: it starts the body, so put it back.
			r = bufio.NewReader(io.MultiReader(bytes.NewReader(line), r))
			break
		}
		block.Write(line)
	}
	block.WriteString("\r\n")
	h, err := textproto.ReadHeader(bufio.NewReader(&block))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadHeader, err)
	}
	return &Message{Header: mail.Header{Header: message.Header{Header: h}}, Body: r}, nil
}

// readLine reads one line with its end, failing past limit bytes.
func readLine(r *bufio.Reader, limit int) ([]byte, error) {
	var line []byte
	for {
		frag, err := r.ReadSlice('\n')
		line = append(line, frag...)
		if len(line) > limit {
			return nil, ErrHeaderTooLarge
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err == io.EOF {
			return line, nil
		}
		return line, err
	}
}

func isBlank(line []byte) bool {
	return len(bytes.TrimRight(line, "\r\n")) == 0
}

// isFieldStart matches "name:" where name is printable ASCII without colon
// (RFC 5322 section 2.2), allowing the blanks before the colon seen in the
// wild.
func isFieldStart(line []byte) bool {
	i := 0
	for i < len(line) && line[i] >= 33 && line[i] <= 126 && line[i] != ':' {
		i++
	}
	if i == 0 {
		return false
	}
	for i < len(line) && (line[i] == ' ' || line[i] == '\t') {
		i++
	}
	return i < len(line) && line[i] == ':'
}

// Recipients returns the addresses in To, Cc and Bcc (what sendmail -t
// delivers to), without duplicates.
func (m *Message) Recipients() ([]addr.Mailbox, error) {
	var out []addr.Mailbox
	seen := map[addr.Mailbox]bool{}
	for _, key := range []string{"To", "Cc", "Bcc"} {
		for _, v := range m.Header.Values(key) {
			if strings.TrimSpace(v) == "" {
				continue
			}
			list, err := mail.ParseAddressList(v)
			if err != nil {
				return nil, fmt.Errorf("%w in %s: %q: %v", ErrBadAddress, key, v, err)
			}
			for _, a := range list {
				mb, err := addr.Parse(a.Address)
				if err != nil {
					return nil, fmt.Errorf("%w in %s: %q: %v", ErrBadAddress, key, a.Address, err)
				}
				if !seen[mb] {
					seen[mb] = true
					out = append(out, mb)
				}
			}
		}
	}
	return out, nil
}

// ParseAddress reads an address as a command line gives it: local@domain,
// or "Name <local@domain>"; a bare local part gets defaultDomain.
func ParseAddress(s, defaultDomain string) (addr.Mailbox, error) {
	if !strings.ContainsAny(s, "@<") {
		s += "@" + defaultDomain
	}
	mb, err := addr.Parse(s)
	if err == nil {
		return mb, nil
	}
	if a, err2 := mail.ParseAddress(s); err2 == nil {
		if mb, err2 = addr.Parse(a.Address); err2 == nil {
			return mb, nil
		}
	}
	return addr.Mailbox{}, fmt.Errorf("%w: %q: %v", ErrBadAddress, s, err)
}

// Defaults are what Complete fills in where the message lacks it.
type Defaults struct {
	From      addr.Mailbox
	FullName  string
	Date      time.Time
	MessageID string // without angle brackets
}

// Complete adds From, Date and Message-ID where missing and removes Bcc,
// which must never reach a recipient.
func (m *Message) Complete(d Defaults) {
	h := &m.Header
	h.Del("Bcc")
	if !h.Has("From") {
		h.SetAddressList("From", []*mail.Address{{Name: d.FullName, Address: d.From.String()}})
	}
	if !h.Has("Date") {
		h.SetDate(d.Date)
	}
	if !h.Has("Message-Id") && d.MessageID != "" {
		h.SetMessageID(d.MessageID)
	}
}

// WriteTo writes the header and the rest of the body in canonical form.
func (m *Message) WriteTo(w io.Writer) (int64, error) {
	cw := &CountWriter{W: w}
	if err := textproto.WriteHeader(cw, m.Header.Header.Header); err != nil {
		return cw.N, err
	}
	_, err := io.Copy(NewCRLFWriter(cw), m.Body)
	return cw.N, err
}

// CountWriter passes writes on to W and counts the octets W took in N.
type CountWriter struct {
	W io.Writer
	N int64
}

func (c *CountWriter) Write(p []byte) (int, error) {
	n, err := c.W.Write(p)
	c.N += int64(n)
	return n, err
}

// CRLFWriter turns bare LF line ends into CRLF and leaves CRLF alone.
type CRLFWriter struct {
	w    io.Writer
	prev byte
}

// NewCRLFWriter returns a CRLFWriter writing to w.
func NewCRLFWriter(w io.Writer) *CRLFWriter { return &CRLFWriter{w: w} }

func (c *CRLFWriter) Write(p []byte) (int, error) {
	var buf []byte
	start := 0
	for i, b := range p {
		if b == '\n' && !(i == 0 && c.prev == '\r' || i > 0 && p[i-1] == '\r') {
			buf = append(buf, p[start:i]...)
			buf = append(buf, '\r', '\n')
			start = i + 1
		}
	}
	if len(p) > 0 {
		c.prev = p[len(p)-1]
	}
	if buf == nil {
		_, err := c.w.Write(p)
		return len(p), err
	}
	buf = append(buf, p[start:]...)
	_, err := c.w.Write(buf)
	return len(p), err
}

// DotReader ends its input at a line holding a single dot, as sendmail does
// unless it is given -i: the rest of the input is not read.
type DotReader struct {
	r    *bufio.Reader
	line []byte
	done bool
}

// NewDotReader returns a DotReader reading from r.
func NewDotReader(r io.Reader) *DotReader { return &DotReader{r: bufio.NewReader(r)} }

func (d *DotReader) Read(p []byte) (int, error) {
	for len(d.line) == 0 {
		if d.done {
			return 0, io.EOF
		}
		line, err := d.r.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			d.line = append(d.line[:0], line...)
			break
		}
		if err != nil && err != io.EOF {
			return 0, err
		}
		if t := bytes.TrimRight(line, "\r\n"); len(t) == 1 && t[0] == '.' && len(line) > 1 {
			d.done = true
			return 0, io.EOF
		}
		if err == io.EOF {
			d.done = true
		}
		d.line = append(d.line[:0], line...)
	}
	n := copy(p, d.line)
	d.line = d.line[n:]
	return n, nil
}
