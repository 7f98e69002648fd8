package store

import (
	"bufio"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"im2000/lib/addr"
	"im2000/lib/msgid"
)

// Envelope is what the store knows about a message besides its bytes. It is
// written once, at the head of the message file, and never changes.
type Envelope struct {
	ID         msgid.ID
	Sender     addr.Mailbox
	Submitted  time.Time // whole seconds
	Lifetime   time.Duration
	Recipients []Recipient
	Lists      []List
}

// Recipient is one addressee and the identifier that is its capability to
// retrieve the message.
type Recipient struct {
	ID   msgid.ID
	Addr addr.Mailbox
}

// List is one list the message was posted to, with the list identifier
// under which list readers retrieve it.
type List struct {
	ID   msgid.ID
	Name string
}

// Expires is the end of the message's lifetime.
func (e *Envelope) Expires() time.Time { return e.Submitted.Add(e.Lifetime) }

// Recipient returns the index of the recipient or list with identifier id
// (lists are numbered after the recipients), or -1.
func (e *Envelope) index(id msgid.ID) int {
	for i, r := range e.Recipients {
		if r.ID == id {
			return i
		}
	}
	for i, l := range e.Lists {
		if l.ID == id {
			return len(e.Recipients) + i
		}
	}
	return -1
}

const envelopeMagic = "im2000-envelope 1"

// maxEnvelope bounds how much a reader will take before it gives up on
// finding the blank line that ends an envelope.
const maxEnvelope = 16 << 20

// Marshal writes the envelope's text form, ending with the blank line that
// separates it from the message.
func (e *Envelope) Marshal() []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\nid %s\nsender %s\nsubmitted %d\nlifetime %d\n",
		envelopeMagic, e.ID, e.Sender, e.Submitted.Unix(), int64(e.Lifetime/time.Second))
	for _, r := range e.Recipients {
		fmt.Fprintf(&b, "rcpt %s %s\n", r.ID, r.Addr)
	}
	for _, l := range e.Lists {
		fmt.Fprintf(&b, "list %s %s\n", l.ID, l.Name)
	}
	b.WriteByte('\n')
	return []byte(b.String())
}

// ErrCorrupt is wrapped by every error about a malformed file in the store.
var ErrCorrupt = errors.New("corrupt store file")

func corrupt(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, a...))
}

// ReadEnvelope parses an envelope from r and returns it with the number of
// bytes it took (where the message starts).
func ReadEnvelope(r *bufio.Reader) (*Envelope, int64, error) {
	var e Envelope
	var n int64
	seen := map[string]bool{}
	for first := true; ; first = false {
		line, err := r.ReadString('\n')
		n += int64(len(line))
		if err != nil {
			return nil, 0, corrupt("envelope ends before its blank line")
		}
		if n > maxEnvelope {
			return nil, 0, corrupt("envelope longer than %d bytes", maxEnvelope)
		}
		line = line[:len(line)-1]
		if first {
			if line != envelopeMagic {
				return nil, 0, corrupt("envelope does not start with %q", envelopeMagic)
			}
			continue
		}
		if line == "" {
			break
		}
		key, val, _ := strings.Cut(line, " ")
		if key != "rcpt" && key != "list" {
			if seen[key] {
				return nil, 0, corrupt("envelope repeats %q", key)
			}
			seen[key] = true
		}
		if err := e.field(key, val); err != nil {
			return nil, 0, corrupt("envelope line %q: %v", line, err)
		}
	}
	for _, k := range []string{"id", "sender", "submitted", "lifetime"} {
		if !seen[k] {
			return nil, 0, corrupt("envelope has no %q", k)
		}
	}
	return &e, n, nil
}

func (e *Envelope) field(key, val string) error {
	var err error
	switch key {
	case "id":
		e.ID, err = msgid.Parse(val)
	case "sender":
		e.Sender, err = addr.Parse(val)
	case "submitted":
		var t int64
		t, err = parseUint(val)
		e.Submitted = time.Unix(t, 0)
	case "lifetime":
		var s int64
		s, err = parseUint(val)
		if s > int64(maxLifetime/time.Second) {
			return errors.New("lifetime too long")
		}
		e.Lifetime = time.Duration(s) * time.Second
	case "rcpt":
		idText, a, _ := strings.Cut(val, " ")
		var r Recipient
		if r.ID, err = msgid.Parse(idText); err == nil {
			r.Addr, err = addr.Parse(a)
		}
		e.Recipients = append(e.Recipients, r)
	case "list":
		idText, name, _ := strings.Cut(val, " ")
		var l List
		if l.ID, err = msgid.Parse(idText); err == nil {
			l.Name = name
			err = CheckListName(name)
		}
		e.Lists = append(e.Lists, l)
	default:
		// Unknown keys are refused rather than skipped: an envelope is only
		// ever written by this store, so an unknown key means damage.
		return errors.New("unknown key")
	}
	return err
}

// maxLifetime keeps Submitted+Lifetime far from overflow.
const maxLifetime = 100 * 365 * 24 * time.Hour

func parseUint(s string) (int64, error) {
	if s == "" || (len(s) > 1 && s[0] == '0') {
		return 0, errors.New("not a canonical number")
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, errors.New("not a number of 0 or more")
	}
	return n, nil
}

// CheckListName accepts the names a list may have: they are directory names
// in the list index, so they are restricted to lowercase letters, digits and
// . _ - (not first), at most 64 characters.
func CheckListName(name string) error {
	if name == "" || len(name) > 64 {
		return fmt.Errorf("%w %q: must be 1 to 64 characters", ErrBadListName, name)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || i > 0 && (c == '.' || c == '_' || c == '-')
		if !ok {
			return fmt.Errorf("%w %q: use lowercase letters, digits and . _ - (not first)", ErrBadListName, name)
		}
	}
	return nil
}
