package submit

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"

	"im2000/lib/addr"
	"im2000/lib/conf"
	"im2000/lib/mailmsg"
)

// ErrSender is a message whose From or Sender field names an address the
// submitting account may not use (DESIGN.md section 3: the store vouches
// only for its own accounts), or names it so that it cannot be checked.
var ErrSender = errors.New("sender refused")

// Senders are the addresses one account may put in From and Sender: its
// own, account@me, and those the admin lists for it in senders/ACCOUNT in
// the configuration directory, one address or @domain per line. Domains
// compare in any case; local parts exactly, as accounts are named (alice
// and Alice are two accounts).
type Senders struct {
	Account string
	Own     addr.Mailbox
	File    string // where the admin allows more
	addrs   map[addr.Mailbox]bool
	domains map[string]bool
}

// LoadSenders reads what account may send as. A line that is neither an
// address nor @domain is an error: the admin meant something by it.
func LoadSenders(d conf.Dir, account, me string) (*Senders, error) {
	own, err := addr.Parse(account + "@" + me)
	if err != nil {
		return nil, fmt.Errorf("account %q at %q is not a valid address: %w", account, me, err)
	}
	s := &Senders{Account: account, Own: own, File: d.Path(filepath.Join("senders", account)),
		addrs: map[addr.Mailbox]bool{own: true}, domains: map[string]bool{}}
	if account == "" || account[0] == '.' || strings.ContainsRune(account, '/') {
		return s, nil // never a path outside senders/
	}
	lines, err := d.Lines(filepath.Join("senders", account))
	if err != nil {
		return nil, err
	}
	for _, l := range lines {
		if dom, ok := strings.CutPrefix(l, "@"); ok {
			mb, err := addr.Parse("x@" + dom)
			if err != nil {
				return nil, fmt.Errorf("%s: %q is not @domain: %v", s.File, l, err)
			}
			s.domains[mb.Domain] = true
			continue
		}
		mb, err := addr.Parse(l)
		if err != nil {
			return nil, fmt.Errorf("%s: %q is neither an address nor @domain: %v", s.File, l, err)
		}
		s.addrs[mb] = true
	}
	return s, nil
}

// Allows reports whether the account may send as mb.
func (s *Senders) Allows(mb addr.Mailbox) bool {
	return s.addrs[mb] || s.domains[mb.Domain]
}

// refuse words a refusal so that it says what to do.
func (s *Senders) refuse(format string, a ...any) error {
	return fmt.Errorf("%w: %s; write your own address %s, or have the admin allow the address in %s",
		ErrSender, fmt.Sprintf(format, a...), s.Own, s.File)
}

// Check applies the rule to a header: every mailbox of every From field,
// and the Sender, must be one the account may use. Several From mailboxes
// need a Sender (RFC 5322 section 3.6.2). A message without From passes:
// who sent it is then only the envelope's sender, which is the account.
func (s *Senders) Check(h mail.Header) error {
	var froms int
	for _, v := range h.Values("From") {
		list, err := mail.ParseAddressList(v)
		if err != nil {
			return s.refuse("From: %q cannot be read: %v", short(v), err)
		}
		if len(list) == 0 {
			return s.refuse("From: %q names no address", short(v))
		}
		for _, a := range list {
			if err := s.allowed("From", a.Address); err != nil {
				return err
			}
		}
		froms += len(list)
	}
	senders := h.Values("Sender")
	switch {
	case len(senders) > 1:
		return s.refuse("%d Sender fields; a message has at most one", len(senders))
	case len(senders) == 1:
		a, err := mail.ParseAddress(senders[0])
		if err != nil {
			return s.refuse("Sender: %q is not one address: %v", short(senders[0]), err)
		}
		return s.allowed("Sender", a.Address)
	case froms > 1:
		return fmt.Errorf("%w: several From addresses need a Sender field naming who sends: add Sender: %s", ErrSender, s.Own)
	}
	return nil
}

func (s *Senders) allowed(field, address string) error {
	mb, err := addr.Parse(address)
	if err != nil {
		return s.refuse("%s: %q is not a valid address: %v", field, short(address), err)
	}
	if !s.Allows(mb) {
		return fmt.Errorf("%w: %s: %s is not an address %s may send as; write your own address %s, or have the admin add %s to %s",
			ErrSender, field, mb, s.Account, s.Own, mb, s.File)
	}
	return nil
}

// short cuts a field's value for an error message.
func short(v string) string {
	if len(v) > 80 {
		return strings.ToValidUTF8(v[:80], "") + "..."
	}
	return v
}

// CheckRaw applies the rule to the header section of a message stored as
// it was sent (im2000-submitd). Readers differ on a header with lines that
// are not fields, and the store's own summary keeps any line that names
// From, so every field line before the first empty line counts here, even
// after a line that is not a field. A bare CR, which some readers take as
// a line end, is refused.
func (s *Senders) CheckRaw(section []byte) error {
	for i, c := range section {
		if c == '\r' && (i+1 == len(section) || section[i+1] != '\n') {
			return s.refuse("the header section has a CR without LF, which readers take differently")
		}
	}
	var h textproto.Header
	for _, field := range splitFields(section) {
		got, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(append(field, "\r\n"...))))
		if err != nil {
			continue // not a field: nothing reads a From from it
		}
		for f := got.Fields(); f.Next(); {
			if k := f.Key(); strings.EqualFold(k, "From") || strings.EqualFold(k, "Sender") {
				h.Add(k, f.Value())
			}
		}
	}
	return s.Check(mail.Header{Header: message.Header{Header: h}})
}

// splitFields cuts a header section into lines, each with the lines that
// continue it (starting with a blank), each ending in a line end.
func splitFields(section []byte) [][]byte {
	var out [][]byte
	for len(section) > 0 {
		n := bytes.IndexByte(section, '\n') + 1
		if n == 0 {
			n = len(section)
		}
		line := section[:n]
		section = section[n:]
		if len(out) > 0 && (line[0] == ' ' || line[0] == '\t') {
			out[len(out)-1] = append(out[len(out)-1], line...)
			continue
		}
		out = append(out, append([]byte(nil), line...))
	}
	for i, f := range out {
		if f[len(f)-1] != '\n' {
			out[i] = append(f, "\r\n"...)
		}
	}
	return out
}

// Head keeps the start of a message that arrives in pieces, up to the end
// of its header section (the first empty line), at most mailmsg.MaxHeader.
type Head struct {
	buf   []byte
	end   int // length of the header section once its end is seen
	found bool
	over  bool
}

// Write takes the next piece of the message.
func (h *Head) Write(p []byte) {
	if h.found || h.over {
		return
	}
	from := max(0, len(h.buf)-2)
	h.buf = append(h.buf, p[:min(len(p), mailmsg.MaxHeader+3-len(h.buf))]...)
	if end, ok := sectionEnd(h.buf, from); ok {
		h.end, h.found = end, true
		h.buf = h.buf[:end]
		return
	}
	h.over = len(h.buf) > mailmsg.MaxHeader+2
}

// sectionEnd finds the empty line ending a header section, looking from
// offset from on, and returns the section's length without it.
func sectionEnd(b []byte, from int) (int, bool) {
	if bytes.HasPrefix(b, []byte("\n")) || bytes.HasPrefix(b, []byte("\r\n")) {
		return 0, true
	}
	for i := from; i < len(b); i++ {
		if b[i] != '\n' {
			continue
		}
		if rest := b[i+1:]; bytes.HasPrefix(rest, []byte("\n")) || bytes.HasPrefix(rest, []byte("\r\n")) {
			return i + 1, true
		}
	}
	return 0, false
}

// Section returns the header section of the whole message written: up to
// its first empty line, or all of it when it has none.
func (h *Head) Section() ([]byte, error) {
	if h.over {
		return nil, fmt.Errorf("%w: its header section (up to the first empty line) is larger than %d bytes", ErrSender, mailmsg.MaxHeader)
	}
	return h.buf, nil
}
