// Package addr parses and prints IM2000 mailboxes: local-part@domain, where
// the domain is a sequence of labels (DESIGN.md section 3, MailBox).
//
// The accepted syntax is RFC 5321's Mailbox without address literals: the
// local part is a dot-atom or a quoted string, the domain a dot-separated
// list of labels. UTF-8 is allowed in both (RFC 6531). Domains are folded to
// lowercase, local parts are kept as written.
package addr

import (
	"errors"
	"strings"
	"unicode/utf8"
)

// Mailbox is one address.
type Mailbox struct {
	Local  string // unquoted local part
	Domain string // lowercase, labels joined by "."
}

// Limits from RFC 5321 section 4.5.3.1.
const (
	maxLocal  = 64
	maxDomain = 253
	maxLabel  = 63
)

var (
	ErrEmpty  = errors.New("empty address")
	ErrNoAt   = errors.New("address has no @domain")
	ErrLocal  = errors.New("bad local part")
	ErrDomain = errors.New("bad domain")
)

// Parse reads local@domain. Surrounding angle brackets are not accepted:
// callers that take RFC 5322 name-addr forms extract the address first.
func Parse(s string) (Mailbox, error) {
	if s == "" {
		return Mailbox{}, ErrEmpty
	}
	if !utf8.ValidString(s) {
		return Mailbox{}, ErrLocal
	}
	at := strings.LastIndexByte(s, '@')
	if at < 0 {
		return Mailbox{}, ErrNoAt
	}
	local, err := parseLocal(s[:at])
	if err != nil {
		return Mailbox{}, err
	}
	domain, err := parseDomain(s[at+1:])
	if err != nil {
		return Mailbox{}, err
	}
	return Mailbox{Local: local, Domain: domain}, nil
}

// New checks a local part and a domain given separately, as the wire
// carries them.
func New(local string, labels []string) (Mailbox, error) {
	if local == "" || len(local) > maxLocal || !utf8.ValidString(local) {
		return Mailbox{}, ErrLocal
	}
	for _, r := range local {
		if r < 0x20 || r == 0x7f {
			return Mailbox{}, ErrLocal
		}
	}
	domain, err := parseDomain(strings.Join(labels, "."))
	if err != nil {
		return Mailbox{}, err
	}
	return Mailbox{Local: local, Domain: domain}, nil
}

func parseLocal(s string) (string, error) {
	if s == "" {
		return "", ErrLocal
	}
	var local string
	if s[0] == '"' {
		if len(s) < 2 || s[len(s)-1] != '"' {
			return "", ErrLocal
		}
		var b strings.Builder
		q := s[1 : len(s)-1]
		for i := 0; i < len(q); i++ {
			c := q[i]
			switch {
			case c == '\\':
				i++
				if i == len(q) || q[i] < 0x20 || q[i] == 0x7f {
					return "", ErrLocal
				}
				b.WriteByte(q[i])
			case c == '"' || c < 0x20 || c == 0x7f:
				return "", ErrLocal
			default:
				b.WriteByte(c)
			}
		}
		local = b.String()
		if local == "" {
			return "", ErrLocal
		}
	} else {
		if !isDotAtom(s) {
			return "", ErrLocal
		}
		local = s
	}
	if len(local) > maxLocal {
		return "", ErrLocal
	}
	return local, nil
}

func parseDomain(s string) (string, error) {
	if s == "" || len(s) > maxDomain {
		return "", ErrDomain
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > maxLabel || label[0] == '-' || label[len(label)-1] == '-' {
			return "", ErrDomain
		}
		for _, r := range label {
			if !(r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= 0x80 && r != utf8.RuneError) {
				return "", ErrDomain
			}
		}
	}
	return strings.ToLower(s), nil
}

// atext of RFC 5322 section 3.2.3, plus UTF-8 (RFC 6532).
func isAtext(r rune) bool {
	switch {
	case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		return true
	case r >= 0x80 && r != utf8.RuneError:
		return true
	}
	return strings.ContainsRune("!#$%&'*+-/=?^_`{|}~", r)
}

func isDotAtom(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for _, r := range s {
		if r != '.' && !isAtext(r) {
			return false
		}
	}
	return true
}

// String prints the address, quoting the local part when it is not a dot-atom.
func (m Mailbox) String() string {
	if isDotAtom(m.Local) {
		return m.Local + "@" + m.Domain
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(m.Local); i++ {
		if c := m.Local[i]; c == '"' || c == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(m.Local[i])
	}
	b.WriteString(`"@`)
	b.WriteString(m.Domain)
	return b.String()
}

// Labels returns the domain as the wire's DomainName, most specific first.
func (m Mailbox) Labels() []string { return strings.Split(m.Domain, ".") }
