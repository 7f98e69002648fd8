// Package rnaqp is the Recipient Notification Agent Query Protocol:
// recipients authenticate and fetch-and-clear their notifications
// (spec/im2000-profile.asn1).
package rnaqp

import (
	"golang.org/x/crypto/cryptobyte"

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

type RetrieveAndClearOK struct{ Notifications []NotificationAndLocalData }

func (*RetrieveAndClearOK) Alt() int { return 2 }
func (r *RetrieveAndClearOK) MarshalFields(b *cryptobyte.Builder) {
	wire.AddSeq(b, 0, func(b *cryptobyte.Builder) {
		for i := range r.Notifications {
			n := &r.Notifications[i]
			b.AddASN1(0x30, func(b *cryptobyte.Builder) {
				wire.AddSeq(b, 0, n.Notification.Marshal)
				wire.AddClientLocation(b, 1, n.Submitter)
				wire.AddUint(b, 2, n.Date)
			})
		}
	})
}
func (r *RetrieveAndClearOK) UnmarshalFields(f *wire.Fields) {
	r.Notifications = []NotificationAndLocalData{}
	f.EachSeq(0, func(g *wire.Fields) {
		var n NotificationAndLocalData
		sub := g.Sub(0)
		n.Notification.Unmarshal(sub)
		g.Adopt(sub)
		n.Submitter, n.Date = g.ClientLocation(1), g.Uint(2)
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
