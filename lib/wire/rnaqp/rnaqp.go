// Package rnaqp is the Recipient Notification Agent Query Protocol:
// recipients authenticate and fetch-and-clear their notifications
// (spec/im2000-profile.asn1).
package rnaqp

import (
	"fmt"

	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/cryptobyte/asn1"

	"im2000/lib/wire"
	"im2000/lib/wire/rnasp"
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
	ErrorNotPermitted
)

// Authenticate and AuthenticateOK are shared with the other protocol that
// authenticates.
type (
	Authenticate   = wire.Authenticate
	AuthenticateOK = wire.AuthenticateOK
)

type RetrieveAndClear struct{}

func (RetrieveAndClear) Alt() int                          { return 1 }
func (RetrieveAndClear) MarshalFields(*cryptobyte.Builder) {}
func (RetrieveAndClear) UnmarshalFields(*wire.Fields)      {}

// NotificationAndLocalData is a notification as the agent keeps it: with
// who handed it over and when.
type NotificationAndLocalData struct {
	Notification rnasp.Notification
	Submitter    wire.ClientLocation
	Date         uint64 // seconds since 1970
}

func (n *NotificationAndLocalData) marshalFields(b *cryptobyte.Builder) {
	wire.AddSeq(b, 0, n.Notification.Marshal)
	wire.AddClientLocation(b, 1, n.Submitter)
	wire.AddUint(b, 2, n.Date)
}

func (n *NotificationAndLocalData) unmarshalFields(g *wire.Fields) {
	sub := g.Sub(0)
	n.Notification.Unmarshal(sub)
	g.Adopt(sub)
	n.Submitter, n.Date = g.ClientLocation(1), g.Uint(2)
}

// Marshal encodes the notification as the DER SEQUENCE it is on the wire:
// the form an agent keeps it in.
func (n *NotificationAndLocalData) Marshal() []byte {
	var b cryptobyte.Builder
	b.AddASN1(asn1.SEQUENCE, n.marshalFields)
	return b.BytesOrPanic()
}

// Unmarshal decodes what Marshal wrote.
func (n *NotificationAndLocalData) Unmarshal(data []byte) error {
	s := cryptobyte.String(data)
	var body cryptobyte.String
	if !s.ReadASN1(&body, asn1.SEQUENCE) || !s.Empty() {
		return fmt.Errorf("%w: not one NotificationAndLocalData", wire.ErrMalformed)
	}
	f := wire.ReadFields(body)
	n.unmarshalFields(f)
	return f.Err()
}

type RetrieveAndClearOK struct{ Notifications []NotificationAndLocalData }

func (*RetrieveAndClearOK) Alt() int { return 2 }
func (r *RetrieveAndClearOK) MarshalFields(b *cryptobyte.Builder) {
	wire.AddSeq(b, 0, func(b *cryptobyte.Builder) {
		for i := range r.Notifications {
			b.AddASN1(asn1.SEQUENCE, r.Notifications[i].marshalFields)
		}
	})
}
func (r *RetrieveAndClearOK) UnmarshalFields(f *wire.Fields) {
	r.Notifications = []NotificationAndLocalData{}
	f.EachSeq(0, func(g *wire.Fields) {
		var n NotificationAndLocalData
		n.unmarshalFields(g)
		r.Notifications = append(r.Notifications, n)
	})
}

// Protocol describes RNAQP to the codec and the session engine.
var Protocol = &wire.Protocol{
	Name: "RNAQP",
	Commands: map[int]func() wire.Body{
		0: func() wire.Body { return new(Authenticate) },
		1: func() wire.Body { return RetrieveAndClear{} },
	},
	Responses: map[int]func() wire.Body{
		0: func() wire.Body { return wire.Null{} },
		1: func() wire.Body { return AuthenticateOK{} },
		2: func() wire.Body { return new(RetrieveAndClearOK) },
	},
	StatusNames: []string{"noerror", "errormalformedpdu", "errorcommandtimeout", "errornotauthenticated",
		"errorunexpectedcommand", "errorserviceshutdown", "errorinternalproblem", "errornotpermitted"},
	Status: wire.Statuses{OK: NoError, Malformed: ErrorMalformedPDU, Timeout: ErrorCommandTimeout,
		Unexpected: ErrorUnexpectedCommand, NotAuthenticated: ErrorNotAuthenticated,
		Shutdown: ErrorServiceShutdown, Internal: ErrorInternalProblem},
	Auth: func(b wire.Body) bool { _, ok := b.(*Authenticate); return ok },
}
