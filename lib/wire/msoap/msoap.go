// Package msoap is the Message Store Originator Access Protocol: originators
// authenticate, submit, track and cancel (spec/im2000-profile.asn1).
package msoap

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
	ErrorUnexpectedCommand
	ErrorServiceShutdown
	ErrorInternalProblem
	ErrorNotAuthenticated
	ErrorNotPermitted
	ErrorNotEnoughRoom
	ErrorWouldExceedQuota
	ErrorLifetimeTooShort
	ErrorNoSuchMessage
)

// SubmissionStatus values.
const (
	Acceptable uint64 = iota
	SubmissionAccessDenied
)

// Commands.

// Authenticate and AuthenticateOK are shared with the other protocol that
// authenticates.
type (
	Authenticate   = wire.Authenticate
	AuthenticateOK = wire.AuthenticateOK
)

type SubmitEnvelope struct {
	Recipients []wire.MailBox // optional: absent when empty
	Lists      [][]byte       // optional: absent when empty
	Lifetime   uint64         // seconds
}

func (*SubmitEnvelope) Alt() int { return 1 }
func (c *SubmitEnvelope) MarshalFields(b *cryptobyte.Builder) {
	if len(c.Recipients) > 0 {
		wire.AddMailBoxes(b, 0, c.Recipients)
	}
	if len(c.Lists) > 0 {
		wire.AddSeq(b, 1, func(b *cryptobyte.Builder) {
			for _, l := range c.Lists {
				b.AddASN1OctetString(l)
			}
		})
	}
	wire.AddUint(b, 2, c.Lifetime)
}
func (c *SubmitEnvelope) UnmarshalFields(f *wire.Fields) {
	c.Recipients = f.MailBoxes(0)
	if f.Has(1) {
		c.Lists = f.OctetStrings(1)
	}
	c.Lifetime = f.Uint(2)
}

type SubmitMsgChunk struct {
	IsLast bool
	Offset uint64
	Data   []byte
}

func (*SubmitMsgChunk) Alt() int { return 2 }
func (c *SubmitMsgChunk) MarshalFields(b *cryptobyte.Builder) {
	wire.AddBool(b, 0, c.IsLast)
	wire.AddUint(b, 1, c.Offset)
	wire.AddBytes(b, 2, c.Data)
}
func (c *SubmitMsgChunk) UnmarshalFields(f *wire.Fields) {
	c.IsLast, c.Offset, c.Data = f.Bool(0), f.Uint(1), f.Bytes(2)
}

type Track struct{ ID msgid.ID }

func (*Track) Alt() int                              { return 3 }
func (c *Track) MarshalFields(b *cryptobyte.Builder) { wire.AddID(b, 0, c.ID) }
func (c *Track) UnmarshalFields(f *wire.Fields)      { c.ID = f.ID(0) }

type Cancel struct{ ID msgid.ID }

func (*Cancel) Alt() int                              { return 4 }
func (c *Cancel) MarshalFields(b *cryptobyte.Builder) { wire.AddID(b, 0, c.ID) }
func (c *Cancel) UnmarshalFields(f *wire.Fields)      { c.ID = f.ID(0) }

// Resend is im2000's one extension of the profile's MSOAP (command
// alternative [5]; DESIGN-NOTES.md, "MSOAP Resend"): the sender asks its
// store to notify again, now, every recipient who has not silenced the
// message (im2000-status --resend at a remote store).
//
//	CommandResend ::= SEQUENCE { identifier [0] IMPLICIT MessageIdentifier }
//
// A store of another implementation answers it as any unknown
// alternative, errormalformedpdu, and nothing else changes: the client
// says that the store does not offer it.
type Resend struct{ ID msgid.ID }

func (*Resend) Alt() int                              { return 5 }
func (c *Resend) MarshalFields(b *cryptobyte.Builder) { wire.AddID(b, 0, c.ID) }
func (c *Resend) UnmarshalFields(f *wire.Fields)      { c.ID = f.ID(0) }

// Responses.

type SubmitEnvelopeOK struct {
	Recipients []uint64 // SubmissionStatus per envelope recipient; optional
	Lists      []uint64 // SubmissionStatus per envelope list; optional
}

func (*SubmitEnvelopeOK) Alt() int { return 2 }
func (r *SubmitEnvelopeOK) MarshalFields(b *cryptobyte.Builder) {
	if len(r.Recipients) > 0 {
		wire.AddEnums(b, 0, r.Recipients)
	}
	if len(r.Lists) > 0 {
		wire.AddEnums(b, 1, r.Lists)
	}
}
func (r *SubmitEnvelopeOK) UnmarshalFields(f *wire.Fields) {
	r.Recipients, r.Lists = f.Enums(0, SubmissionAccessDenied), f.Enums(1, SubmissionAccessDenied)
}

type SubmitMsgChunkOK struct {
	ID *msgid.ID // present in the answer to the last chunk: the message is committed
}

func (*SubmitMsgChunkOK) Alt() int { return 3 }
func (r *SubmitMsgChunkOK) MarshalFields(b *cryptobyte.Builder) {
	if r.ID != nil {
		wire.AddID(b, 0, *r.ID)
	}
}
func (r *SubmitMsgChunkOK) UnmarshalFields(f *wire.Fields) {
	if f.Has(0) {
		id := f.ID(0)
		r.ID = &id
	}
}

// DeliveryStatus is one recipient's state as the store keeps it.
type DeliveryStatus struct {
	Notification uint64 // NotificationStatus: unprocessed (0) .. silenced (7)
	Read         uint64 // ReadStatus: unread (0) .. readall (3)
	Pinned       bool
}

type RecipientStatus struct {
	Recipient wire.MailBox
	Status    DeliveryStatus
}

type TrackOK struct{ Recipients []RecipientStatus }

func (*TrackOK) Alt() int { return 4 }
func (r *TrackOK) MarshalFields(b *cryptobyte.Builder) {
	wire.AddSeq(b, 0, func(b *cryptobyte.Builder) {
		for _, rs := range r.Recipients {
			b.AddASN1(0x30, func(b *cryptobyte.Builder) {
				wire.AddMailBox(b, 0, rs.Recipient)
				wire.AddSeq(b, 1, func(b *cryptobyte.Builder) {
					wire.AddUint(b, 0, rs.Status.Notification)
					wire.AddUint(b, 1, rs.Status.Read)
					wire.AddBool(b, 2, rs.Status.Pinned)
				})
			})
		}
	})
}
func (r *TrackOK) UnmarshalFields(f *wire.Fields) {
	r.Recipients = []RecipientStatus{}
	f.EachSeq(0, func(g *wire.Fields) {
		rs := RecipientStatus{Recipient: g.MailBox(0)}
		d := g.Sub(1)
		rs.Status = DeliveryStatus{Notification: d.UintMax(0, 7), Read: d.UintMax(1, 3), Pinned: d.Bool(2)}
		g.Adopt(d)
		r.Recipients = append(r.Recipients, rs)
	})
}

type CancelOK struct{}

func (CancelOK) Alt() int                          { return 5 }
func (CancelOK) MarshalFields(*cryptobyte.Builder) {}
func (CancelOK) UnmarshalFields(*wire.Fields)      {}

// ResendOK answers Resend (response alternative [6]):
//
//	ResponseResend ::= SEQUENCE { recipients [0] IMPLICIT INTEGER (0..MAX),
//	    held [1] IMPLICIT INTEGER (0..MAX), until [2] IMPLICIT INTEGER (0..MAX) OPTIONAL }
//
// recipients: those made due (not silenced, not failed for good; 0: nobody
// left to notify); held: of those, due only at their last notification
// plus the store's resendfloor; until: the latest such time, in seconds
// since 1970-01-01 UTC.
type ResendOK struct {
	Recipients, Held uint64
	Until            uint64 // 0: absent
}

func (*ResendOK) Alt() int { return 6 }
func (r *ResendOK) MarshalFields(b *cryptobyte.Builder) {
	wire.AddUint(b, 0, r.Recipients)
	wire.AddUint(b, 1, r.Held)
	if r.Until != 0 {
		wire.AddUint(b, 2, r.Until)
	}
}
func (r *ResendOK) UnmarshalFields(f *wire.Fields) {
	r.Recipients, r.Held = f.Uint(0), f.Uint(1)
	if f.Has(2) {
		r.Until = f.Uint(2)
	}
}

// Protocol describes MSOAP to the codec and the session engine.
var Protocol = &wire.Protocol{
	Name: "MSOAP",
	Commands: map[int]func() wire.Body{
		0: func() wire.Body { return new(Authenticate) },
		1: func() wire.Body { return new(SubmitEnvelope) },
		2: func() wire.Body { return new(SubmitMsgChunk) },
		3: func() wire.Body { return new(Track) },
		4: func() wire.Body { return new(Cancel) },
		5: func() wire.Body { return new(Resend) }, // im2000's extension
	},
	Responses: map[int]func() wire.Body{
		0: func() wire.Body { return wire.Null{} },
		1: func() wire.Body { return AuthenticateOK{} },
		2: func() wire.Body { return new(SubmitEnvelopeOK) },
		3: func() wire.Body { return new(SubmitMsgChunkOK) },
		4: func() wire.Body { return new(TrackOK) },
		5: func() wire.Body { return CancelOK{} },
		6: func() wire.Body { return new(ResendOK) }, // im2000's extension
	},
	StatusNames: []string{"noerror", "errormalformedpdu", "errorcommandtimeout", "errorunexpectedcommand",
		"errorserviceshutdown", "errorinternalproblem", "errornotauthenticated", "errornotpermitted",
		"errornotenoughroom", "errorwouldexceedquota", "errorlifetimetooshort", "errornosuchmessage"},
	Status: wire.Statuses{OK: NoError, Malformed: ErrorMalformedPDU, Timeout: ErrorCommandTimeout,
		Unexpected: ErrorUnexpectedCommand, NotAuthenticated: ErrorNotAuthenticated,
		Shutdown: ErrorServiceShutdown, Internal: ErrorInternalProblem},
	Auth: func(b wire.Body) bool { _, ok := b.(*Authenticate); return ok },
}
