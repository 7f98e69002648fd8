package store

import (
	"bufio"
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"time"

	"im2000/lib/msgid"
)

// Notification is the MSOAP NotificationStatus of one recipient. The values
// are the protocol's ENUMERATED values.
type Notification uint8

const (
	Unprocessed Notification = iota
	BadDomain
	NoService
	NoServer
	ProtocolError
	NoUser
	Notifying
	Silenced
	// Refused is the agent's RNASP result refused: the notification
	// itself is unacceptable to it (DESIGN.md section 3), permanent for
	// that recipient. MSOAP has no value for it; Wire maps it.
	Refused
	// TLSDowngrade is an agent's domain that must be reached over TLS
	// (tlsrequire, or reached over TLS before) offering only cleartext or
	// a certificate that does not verify (issue 16). Temporary; MSOAP
	// has no value for it: Wire says noserver.
	TLSDowngrade
	// TLSBadCert is an agent's TLS form whose certificate does not
	// verify, at a domain not yet known for TLS. Temporary, as above.
	TLSBadCert
	// SMTP is a recipient handed to the smarthost's SMTP relay because
	// its domain publishes no IM2000 service (im2000-notifyd, issue 20).
	// Final; MSOAP Track says silenced (delivered, as far as IM2000 goes).
	SMTP
	// LastNotification is the last state, for loops over all of them.
	LastNotification = SMTP
)

var notificationNames = []string{"unprocessed", "baddomain", "noservice", "noserver", "protocolerror", "nouser",
	"notifying", "silenced", "refused", "tlsdowngrade", "tlsbadcert", "smtp"}

func (n Notification) String() string {
	if int(n) < len(notificationNames) {
		return notificationNames[n]
	}
	return "notification(" + strconv.Itoa(int(n)) + ")"
}

// Final reports a state that will not change by itself: the store has
// given up (baddomain, nouser, refused) or the recipient has the message
// (silenced).
func (n Notification) Final() bool { return n.Failed() || n == Silenced || n == SMTP }

// Failed reports a permanent failure.
func (n Notification) Failed() bool { return n == BadDomain || n == NoUser || n == Refused }

// Wire is the MSOAP NotificationStatus value: the state itself, except
// refused, which the protocol can only call a protocolerror.
func (n Notification) Wire() uint64 {
	if n == Refused {
		return uint64(ProtocolError)
	}
	if n == TLSDowngrade || n == TLSBadCert {
		return uint64(NoServer)
	}
	if n == SMTP {
		return uint64(Silenced)
	}
	return uint64(n)
}

// Read is the MSOAP ReadStatus of one recipient; it only ever moves forward.
type Read uint8

const (
	Unread Read = iota
	Summarised
	ReadHeaders
	ReadAll
)

var readNames = []string{"unread", "summarised", "readheaders", "readall"}

func (r Read) String() string {
	if int(r) < len(readNames) {
		return readNames[r]
	}
	return "read(" + strconv.Itoa(int(r)) + ")"
}

// RecipientStatus is the delivery status of one recipient: the MSOAP
// DeliveryStatus (notification, read, pinned) plus the queue runner's
// bookkeeping.
type RecipientStatus struct {
	ID           msgid.ID
	Notification Notification
	Read         Read
	Pinned       bool
	Attempts     int64
	Last, Next   time.Time // zero: never / as soon as possible
}

// ListStatus counts the retrievals of a message under one list identifier.
type ListStatus struct {
	ID         msgid.ID
	Retrievals int64
}

// Status is the sidecar of one message: its mutable state, one entry per
// recipient and per list in envelope order.
type Status struct {
	Recipients []RecipientStatus
	Lists      []ListStatus
	gen        uint64 // the journal generation the snapshot starts (journal.go)
	// posted is the time (Unix seconds) the commit named the message's
	// list entries by, so that a removal unlinks them by name (reap.go);
	// 0: no lists, or a snapshot from before it was kept.
	posted int64
	// derive are the runs (first index, count) of recipients an "rcpts"
	// line gave, whose ids the reader derives from the message id
	// (loadStatus): a snapshot says nothing the envelope and the key do.
	derive [][2]int
}

// initialStatus is the state of a message just submitted: nothing done yet,
// every copy pinned.
func initialStatus(e *Envelope) *Status {
	s := &Status{}
	for _, r := range e.Recipients {
		s.Recipients = append(s.Recipients, RecipientStatus{ID: r.ID, Pinned: true})
	}
	for _, l := range e.Lists {
		s.Lists = append(s.Lists, ListStatus{ID: l.ID})
	}
	return s
}

const (
	statusMagic = "im2000-status 1"
	// statusMagic2 starts a snapshot with "rcpts" lines, which readers
	// of version 1 do not know.
	statusMagic2 = "im2000-status 2"
	// maxStatusRecipients bounds what an "rcpts" line may make a reader
	// allocate: the most recipients a message may have (MaxRcpt).
	maxStatusRecipients = 1 << 20
)

func unixTime(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

func fromUnix(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(n, 0)
}

// Marshal writes the sidecar's text form: one line per recipient and list.
func (s *Status) Marshal() []byte { return s.marshal(nil) }

// marshal writes the text form, and, given derive (the derived id of each
// recipient: rid.go), one line "rcpts N state" for each run of recipients
// with derived ids and the same state, without their ids. The snapshot a
// commit writes is then one line, not ~70 octets a recipient (issue 17).
func (s *Status) marshal(derive func(int) msgid.ID) []byte {
	var lines bytes.Buffer
	for i := 0; i < len(s.Recipients); {
		r := &s.Recipients[i]
		if derive == nil || r.ID != derive(i) {
			fmt.Fprintf(&lines, "rcpt %s %s\n", r.ID, r.state())
			i++
			continue
		}
		j, st := i+1, r.state()
		for j < len(s.Recipients) && s.Recipients[j].state() == st && s.Recipients[j].ID == derive(j) {
			j++
		}
		fmt.Fprintf(&lines, "rcpts %d %s\n", j-i, st)
		i = j
	}
	var b bytes.Buffer
	if bytes.HasPrefix(lines.Bytes(), []byte("rcpts ")) || bytes.Contains(lines.Bytes(), []byte("\nrcpts ")) {
		b.WriteString(statusMagic2 + "\n")
	} else {
		b.WriteString(statusMagic + "\n")
	}
	if s.gen > 0 {
		fmt.Fprintf(&b, "journal %d\n", s.gen)
	}
	if s.posted > 0 {
		fmt.Fprintf(&b, "posted %d\n", s.posted)
	}
	b.Write(lines.Bytes())
	for _, l := range s.Lists {
		fmt.Fprintf(&b, "list %s %d\n", l.ID, l.Retrievals)
	}
	return b.Bytes()
}

// ParseStatus reads a sidecar.
func ParseStatus(data []byte) (*Status, error) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	if !sc.Scan() || sc.Text() != statusMagic && sc.Text() != statusMagic2 {
		return nil, corrupt("status does not start with %q or %q", statusMagic, statusMagic2)
	}
	v2 := sc.Text() == statusMagic2
	s := &Status{}
	for sc.Scan() {
		f := strings.Split(sc.Text(), " ")
		var err error
		switch {
		case f[0] == "journal" && len(f) == 2 && len(s.Recipients)+len(s.Lists) == 0 && s.gen == 0:
			var g int64
			g, err = parseUint(f[1])
			s.gen = uint64(g)
		case f[0] == "posted" && len(f) == 2 && len(s.Recipients)+len(s.Lists) == 0 && s.posted == 0:
			s.posted, err = parseUint(f[1])
			if err == nil && s.posted == 0 {
				err = fmt.Errorf("posted at 0")
			}
		case f[0] == "rcpt" && len(f) == 8:
			var r RecipientStatus
			if r.ID, err = msgid.Parse(f[1]); err == nil {
				err = r.parse(f[2:])
			}
			s.Recipients = append(s.Recipients, r)
		case f[0] == "rcpts" && len(f) == 8 && v2 && len(s.Lists) == 0:
			var n int64
			var r RecipientStatus
			if n, err = parseUint(f[1]); err == nil && (n < 1 || n > maxStatusRecipients-int64(len(s.Recipients))) {
				err = fmt.Errorf("%d recipients", n)
			}
			if err == nil {
				err = r.parse(f[2:])
			}
			if err == nil {
				s.derive = append(s.derive, [2]int{len(s.Recipients), int(n)})
				for ; n > 0; n-- {
					s.Recipients = append(s.Recipients, r)
				}
			}
		case f[0] == "list" && len(f) == 3:
			var l ListStatus
			if l.ID, err = msgid.Parse(f[1]); err == nil {
				l.Retrievals, err = parseUint(f[2])
			}
			s.Lists = append(s.Lists, l)
		default:
			err = fmt.Errorf("unknown line")
		}
		if err != nil {
			return nil, corrupt("status line %q: %v", sc.Text(), err)
		}
	}
	return s, nil
}

// state is the text of a recipient's state, without its id.
func (r *RecipientStatus) state() string {
	pin := "unpinned"
	if r.Pinned {
		pin = "pinned"
	}
	return fmt.Sprintf("%s %s %s %d %d %d", r.Notification, r.Read, pin, r.Attempts, unixTime(r.Last), unixTime(r.Next))
}

// parse reads the six fields of state.
func (r *RecipientStatus) parse(f []string) error {
	var err error
	n := lookup(notificationNames, f[0])
	rd := lookup(readNames, f[1])
	if n < 0 || rd < 0 || (f[2] != "pinned" && f[2] != "unpinned") {
		return fmt.Errorf("unknown state")
	}
	r.Notification, r.Read, r.Pinned = Notification(n), Read(rd), f[2] == "pinned"
	var last, next int64
	if r.Attempts, err = parseUint(f[3]); err != nil {
		return err
	}
	if last, err = parseUint(f[4]); err != nil {
		return err
	}
	if next, err = parseUint(f[5]); err != nil {
		return err
	}
	r.Last, r.Next = fromUnix(last), fromUnix(next)
	return nil
}

func lookup(names []string, s string) int {
	for i, n := range names {
		if n == s {
			return i
		}
	}
	return -1
}

// matches checks that a sidecar belongs to an envelope: the same
// identifiers in the same order.
func (s *Status) matches(e *Envelope) bool {
	if len(s.Recipients) != len(e.Recipients) || len(s.Lists) != len(e.Lists) {
		return false
	}
	for i := range s.Recipients {
		if s.Recipients[i].ID != e.Recipients[i].ID {
			return false
		}
	}
	for i := range s.Lists {
		if s.Lists[i].ID != e.Lists[i].ID {
			return false
		}
	}
	return true
}
