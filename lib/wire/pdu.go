package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/cryptobyte/asn1"
)

// Body is one alternative of a protocol's commanddata or responsedata CHOICE:
// a SEQUENCE whose tag number is Alt.
type Body interface {
	Alt() int
	MarshalFields(b *cryptobyte.Builder) // the SEQUENCE's contents
	UnmarshalFields(f *Fields)           // reads them; errors stay in f
}

// Null is responsedata [0] IMPLICIT SEQUENCE {}, the same in every protocol.
type Null struct{}

func (Null) Alt() int                          { return 0 }
func (Null) MarshalFields(*cryptobyte.Builder) {}
func (Null) UnmarshalFields(*Fields)           {}

// Statuses are a protocol's values for the statuses the session engine
// itself gives; the protocols number them differently.
type Statuses struct {
	OK, Malformed, Timeout, Unexpected, NotAuthenticated, Shutdown, Internal uint64
}

// Protocol describes one protocol's PDUs.
type Protocol struct {
	Name        string
	Commands    map[int]func() Body // by alternative number
	Responses   map[int]func() Body
	StatusNames []string // ResponseStatus names by value
	Status      Statuses
	// Auth is the command that authenticates, or nil for a protocol
	// without authentication.
	Auth func(Body) bool
}

// StatusName returns the name of a status value.
func (p *Protocol) StatusName(s uint64) string {
	if s < uint64(len(p.StatusNames)) {
		return p.StatusNames[s]
	}
	return fmt.Sprintf("status(%d)", s)
}

// PDU is a decoded command or response.
type PDU struct {
	Command    Body // set for a command
	ForceAbort bool
	Status     uint64
	Response   Body // set for a response
}

const (
	tagCommand  = 1
	tagResponse = 2
)

// MarshalCommand encodes command [1] IMPLICIT Command ::= SEQUENCE {
// commanddata [0] CHOICE }, the CHOICE under an explicit [0].
func MarshalCommand(c Body) []byte {
	var b cryptobyte.Builder
	AddSeq(&b, tagCommand, func(b *cryptobyte.Builder) {
		AddSeq(b, 0, func(b *cryptobyte.Builder) { AddSeq(b, c.Alt(), c.MarshalFields) })
	})
	return b.BytesOrPanic()
}

// MarshalResponse encodes response [2] IMPLICIT Response.
func MarshalResponse(forceAbort bool, status uint64, r Body) []byte {
	var b cryptobyte.Builder
	AddSeq(&b, tagResponse, func(b *cryptobyte.Builder) {
		AddBool(b, 0, forceAbort)
		AddUint(b, 1, status)
		AddSeq(b, 2, func(b *cryptobyte.Builder) { AddSeq(b, r.Alt(), r.MarshalFields) })
	})
	return b.BytesOrPanic()
}

// Unmarshal decodes one PDU of protocol p. Anything after the PDU, an
// unknown alternative, or a bad field is an error wrapping ErrMalformed.
func (p *Protocol) Unmarshal(data []byte) (*PDU, error) {
	s := cryptobyte.String(data)
	var body cryptobyte.String
	var tag asn1.Tag
	if !s.ReadAnyASN1(&body, &tag) || !s.Empty() {
		return nil, malformed("not one DER element")
	}
	f := ReadFields(body)
	switch tag {
	case cctx(tagCommand):
		alt, cons, cbody, err := Choice(f.Seq(0))
		if f.err != nil {
			return nil, f.err
		}
		if err != nil {
			return nil, err
		}
		c, err := decodeBody(p.Commands, alt, cons, cbody, p.Name+" command")
		if err != nil {
			return nil, err
		}
		return &PDU{Command: c}, nil
	case cctx(tagResponse):
		pdu := &PDU{ForceAbort: f.Bool(0), Status: f.UintMax(1, uint64(len(p.StatusNames)-1))}
		alt, cons, rbody, err := Choice(f.Seq(2))
		if f.err != nil {
			return nil, f.err
		}
		if err != nil {
			return nil, err
		}
		if pdu.Response, err = decodeBody(p.Responses, alt, cons, rbody, p.Name+" response"); err != nil {
			return nil, err
		}
		return pdu, nil
	}
	return nil, malformed("PDU tag %#x is neither command [1] nor response [2]", uint8(tag))
}

func decodeBody(table map[int]func() Body, alt int, cons bool, body cryptobyte.String, what string) (Body, error) {
	mk, ok := table[alt]
	if !ok || !cons {
		return nil, malformed("unknown %s [%d]", what, alt)
	}
	b := mk()
	f := ReadFields(body)
	b.UnmarshalFields(f)
	if f.err != nil {
		return nil, fmt.Errorf("%s [%d]: %w", what, alt, f.err)
	}
	return b, nil
}

// DefaultMaxPDU is the largest PDU a server takes unless configured
// otherwise: a 1 MiB chunk of data plus room for the rest.
const DefaultMaxPDU = 1<<20 + 64<<10

// ErrTooLong is returned by ReadFrame for a length prefix over the limit;
// the PDU itself is not read.
var ErrTooLong = errors.New("PDU longer than the limit")

// ReadFrame reads one length-prefixed PDU of at most max octets.
func ReadFrame(r io.Reader, max int) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if uint64(n) > uint64(max) {
		return nil, fmt.Errorf("%w (%d > %d)", ErrTooLong, n, max)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return buf, nil
}

// AppendFrame appends the length prefix and the PDU to dst.
func AppendFrame(dst, pdu []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(pdu)))
	return append(dst, pdu...)
}

// WriteFrame writes one length-prefixed PDU in a single write.
func WriteFrame(w io.Writer, pdu []byte) error {
	_, err := w.Write(AppendFrame(make([]byte, 0, 4+len(pdu)), pdu))
	return err
}
