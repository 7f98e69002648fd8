// Package rnasp is the Recipient Notification Agent Submission Protocol:
// stores hand notifications to a recipient's agent (spec/im2000-profile.asn1).
package rnasp

import (
	"golang.org/x/crypto/cryptobyte"

	"im2000/lib/msgid"
	"im2000/lib/wire"
)

// ResponseStatus values.
const (
	NoError uint64 = iota
	ErrorMalformedPDU
	ErrorCommandTimeout
	ErrorNotAuthenticated
	ErrorUnexpectedCommand
	ErrorServiceShutdown
	ErrorInternalProblem
)

// NotifyResult values (DESIGN.md section 3): nouser and refused are
// permanent for that notification, full is temporary.
const (
	Accepted uint64 = iota
	NoUser
	Full
	Refused
)

// Notification tells an agent that a message for one of its recipients
// waits at a store.
type Notification struct {
	StoreClear wire.ServiceLocation
	StoreSSL   *wire.ServiceLocation // optional
	Recipient  wire.MailBox
	ID         msgid.ID // the recipient's own identifier
	Sender     string
	Size       *uint64 // optional
}

// Marshal adds the notification's fields (the contents of its SEQUENCE).
func (n *Notification) Marshal(b *cryptobyte.Builder) {
	wire.AddLocation(b, 0, n.StoreClear)
	if n.StoreSSL != nil {
		wire.AddLocation(b, 1, *n.StoreSSL)
	}
	wire.AddMailBox(b, 2, n.Recipient)
	wire.AddID(b, 3, n.ID)
	wire.AddBytes(b, 4, []byte(n.Sender))
	if n.Size != nil {
		wire.AddUint(b, 5, *n.Size)
	}
}

// Unmarshal reads the notification's fields.
func (n *Notification) Unmarshal(f *wire.Fields) {
	n.StoreClear = f.Location(0)
	if f.Has(1) {
		l := f.Location(1)
		n.StoreSSL = &l
	}
	n.Recipient, n.ID, n.Sender = f.MailBox(2), f.ID(3), string(f.Bytes(4))
	if f.Has(5) {
		size := f.Uint(5)
		n.Size = &size
	}
}

type Notify struct{ Notifications []Notification }

func (*Notify) Alt() int { return 0 }
func (c *Notify) MarshalFields(b *cryptobyte.Builder) {
	wire.AddSeq(b, 0, func(b *cryptobyte.Builder) {
		for i := range c.Notifications {
			b.AddASN1(0x30, c.Notifications[i].Marshal)
		}
	})
}
func (c *Notify) UnmarshalFields(f *wire.Fields) {
	c.Notifications = []Notification{}
	f.EachSeq(0, func(g *wire.Fields) {
		var n Notification
		n.Unmarshal(g)
		c.Notifications = append(c.Notifications, n)
	})
}

type NotifyOK struct {
	Results []uint64 // NotifyResult per notification; absent means all accepted
}

func (*NotifyOK) Alt() int { return 1 }
func (r *NotifyOK) MarshalFields(b *cryptobyte.Builder) {
	if len(r.Results) > 0 {
		wire.AddEnums(b, 0, r.Results)
	}
}
func (r *NotifyOK) UnmarshalFields(f *wire.Fields) { r.Results = f.Enums(0, Refused) }

// Protocol describes RNASP to the codec and the session engine.
var Protocol = &wire.Protocol{
	Name:     "RNASP",
	Commands: map[int]func() wire.Body{0: func() wire.Body { return new(Notify) }},
	Responses: map[int]func() wire.Body{
		0: func() wire.Body { return wire.Null{} },
		1: func() wire.Body { return new(NotifyOK) },
	},
	StatusNames: []string{"noerror", "errormalformedpdu", "errorcommandtimeout", "errornotauthenticated",
		"errorunexpectedcommand", "errorserviceshutdown", "errorinternalproblem"},
	Status: wire.Statuses{OK: NoError, Malformed: ErrorMalformedPDU, Timeout: ErrorCommandTimeout,
		Unexpected: ErrorUnexpectedCommand, NotAuthenticated: ErrorNotAuthenticated,
		Shutdown: ErrorServiceShutdown, Internal: ErrorInternalProblem},
}
