// Package msrap is the Message Store Recipient Access Protocol: recipients
// retrieve, size up, silence and unpin messages, and scan lists
// (spec/im2000-profile.asn1). It has no authentication: a recipient's
// message identifier is its capability.
package msrap

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
	ErrorNoSuchMessage
)

// RetrievalType values.
const (
	Nothing uint64 = iota
	SummaryOnly
	HeadersOnly
	All
)

type ScanList struct {
	ListName  string
	BeginTime uint64 // seconds since 1970
}

func (*ScanList) Alt() int { return 0 }
func (c *ScanList) MarshalFields(b *cryptobyte.Builder) {
	wire.AddBytes(b, 0, []byte(c.ListName))
	wire.AddUint(b, 1, c.BeginTime)
}
func (c *ScanList) UnmarshalFields(f *wire.Fields) {
	c.ListName, c.BeginTime = string(f.Bytes(0)), f.Uint(1)
}

type Silence struct{ ID msgid.ID }

func (*Silence) Alt() int                              { return 1 }
func (c *Silence) MarshalFields(b *cryptobyte.Builder) { wire.AddID(b, 0, c.ID) }
func (c *Silence) UnmarshalFields(f *wire.Fields)      { c.ID = f.ID(0) }

type UnPin struct{ ID msgid.ID }

func (*UnPin) Alt() int                              { return 2 }
func (c *UnPin) MarshalFields(b *cryptobyte.Builder) { wire.AddID(b, 0, c.ID) }
func (c *UnPin) UnmarshalFields(f *wire.Fields)      { c.ID = f.ID(0) }

type QuerySize struct{ ID msgid.ID }

func (*QuerySize) Alt() int                              { return 3 }
func (c *QuerySize) MarshalFields(b *cryptobyte.Builder) { wire.AddID(b, 0, c.ID) }
func (c *QuerySize) UnmarshalFields(f *wire.Fields)      { c.ID = f.ID(0) }

type Retrieve struct {
	ID             msgid.ID
	Type           uint64
	Offset, Length uint64
}

func (*Retrieve) Alt() int { return 4 }
func (c *Retrieve) MarshalFields(b *cryptobyte.Builder) {
	wire.AddID(b, 0, c.ID)
	wire.AddUint(b, 1, c.Type)
	wire.AddUint(b, 2, c.Offset)
	wire.AddUint(b, 3, c.Length)
}
func (c *Retrieve) UnmarshalFields(f *wire.Fields) {
	c.ID, c.Type, c.Offset, c.Length = f.ID(0), f.UintMax(1, All), f.Uint(2), f.Uint(3)
}

type ScanListOK struct {
	Messages []msgid.ID
	EndTime  uint64
}

func (*ScanListOK) Alt() int { return 1 }
func (r *ScanListOK) MarshalFields(b *cryptobyte.Builder) {
	wire.AddIDs(b, 0, r.Messages)
	wire.AddUint(b, 1, r.EndTime)
}
func (r *ScanListOK) UnmarshalFields(f *wire.Fields) {
	r.Messages, r.EndTime = f.IDs(0), f.Uint(1)
}

type SilenceOK struct{}

func (SilenceOK) Alt() int                          { return 2 }
func (SilenceOK) MarshalFields(*cryptobyte.Builder) {}
func (SilenceOK) UnmarshalFields(*wire.Fields)      {}

type UnPinOK struct{}

func (UnPinOK) Alt() int                          { return 3 }
func (UnPinOK) MarshalFields(*cryptobyte.Builder) {}
func (UnPinOK) UnmarshalFields(*wire.Fields)      {}

type RetrieveOK struct {
	Data []byte
	Size uint64 // the full length of the part requested
}

func (*RetrieveOK) Alt() int { return 4 }
func (r *RetrieveOK) MarshalFields(b *cryptobyte.Builder) {
	wire.AddBytes(b, 0, r.Data)
	wire.AddUint(b, 1, r.Size)
}
func (r *RetrieveOK) UnmarshalFields(f *wire.Fields) { r.Data, r.Size = f.Bytes(0), f.Uint(1) }

type QuerySizeOK struct{ Size uint64 }

func (*QuerySizeOK) Alt() int                              { return 5 }
func (r *QuerySizeOK) MarshalFields(b *cryptobyte.Builder) { wire.AddUint(b, 0, r.Size) }
func (r *QuerySizeOK) UnmarshalFields(f *wire.Fields)      { r.Size = f.Uint(0) }

// Protocol describes MSRAP to the codec and the session engine.
var Protocol = &wire.Protocol{
	Name: "MSRAP",
	Commands: map[int]func() wire.Body{
		0: func() wire.Body { return new(ScanList) },
		1: func() wire.Body { return new(Silence) },
		2: func() wire.Body { return new(UnPin) },
		3: func() wire.Body { return new(QuerySize) },
		4: func() wire.Body { return new(Retrieve) },
	},
	Responses: map[int]func() wire.Body{
		0: func() wire.Body { return wire.Null{} },
		1: func() wire.Body { return new(ScanListOK) },
		2: func() wire.Body { return SilenceOK{} },
		3: func() wire.Body { return UnPinOK{} },
		4: func() wire.Body { return new(RetrieveOK) },
		5: func() wire.Body { return new(QuerySizeOK) },
	},
	StatusNames: []string{"noerror", "errormalformedpdu", "errorcommandtimeout", "errornotauthenticated",
		"errorunexpectedcommand", "errorserviceshutdown", "errorinternalproblem", "errornosuchmessage"},
	Status: wire.Statuses{OK: NoError, Malformed: ErrorMalformedPDU, Timeout: ErrorCommandTimeout,
		Unexpected: ErrorUnexpectedCommand, NotAuthenticated: ErrorNotAuthenticated,
		Shutdown: ErrorServiceShutdown, Internal: ErrorInternalProblem},
}
