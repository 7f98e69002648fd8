package wire_test

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/cryptobyte/asn1"

	"im2000/lib/wire"
	"im2000/lib/wire/msrap"
	"im2000/lib/wire/rnaqp"
	"im2000/lib/wire/wiretest"
)

// inserter rebuilds a DER encoding with extra bytes added to the contents
// of one constructed element: the target-th one in pre-order, at the start
// of its contents or at the end.
type inserter struct {
	target, seen int
	atEnd        bool
	extra        []byte
}

func (in *inserter) elements(b *cryptobyte.Builder, s cryptobyte.String) {
	for !s.Empty() {
		var body cryptobyte.String
		var tag asn1.Tag
		if !s.ReadAnyASN1(&body, &tag) {
			panic("sample is not DER")
		}
		if tag&0x20 == 0 {
			b.AddASN1(tag, func(b *cryptobyte.Builder) { b.AddBytes(body) })
			continue
		}
		me := in.seen
		in.seen++
		b.AddASN1(tag, func(b *cryptobyte.Builder) {
			if me == in.target && !in.atEnd {
				b.AddBytes(in.extra)
			}
			in.elements(b, body)
			if me == in.target && in.atEnd {
				b.AddBytes(in.extra)
			}
		})
	}
}

// insert returns der with extra inserted into its target-th constructed
// element, or nil if der has fewer constructed elements.
func insert(der []byte, target int, atEnd bool, extra []byte) []byte {
	in := &inserter{target: target, atEnd: atEnd, extra: extra}
	var b cryptobyte.Builder
	in.elements(&b, der)
	if in.seen <= target {
		return nil
	}
	return b.BytesOrPanic()
}

func repeat(hex string, n int) string { return strings.Repeat(hex+" ", n) }

// highTagElements are well-formed DER elements with tag numbers of 31 and
// more (X.690 8.1.2.4): of every class, primitive and constructed, with
// tag numbers of one to five octets and lengths in the short and the long
// form. A decoder must skip each of them in a SEQUENCE like any other
// element it does not know.
var highTagElements = map[string]string{
	"[31] primitive, empty":              "9F 1F 00",
	"[31] primitive":                     "9F 1F 02 ABCD",
	"[31] constructed, empty":            "BF 1F 00",
	"[31] constructed":                   "BF 1F 05 30 03 02 01 05",
	"[127] primitive":                    "9F 7F 01 00",
	"[128] constructed":                  "BF 81 00 02 05 00",
	"[200] primitive":                    "9F 81 48 01 FF",
	"[200] constructed":                  "BF 81 48 03 02 01 07",
	"[16384] primitive":                  "9F 81 80 00 00",
	"[2^32-1] primitive":                 "9F 8F FF FF FF 7F 01 00",
	"[31] primitive, length 128":         "9F 1F 81 80 " + repeat("AA", 128),
	"[31] primitive, length 255":         "9F 1F 81 FF " + repeat("AA", 255),
	"[200] constructed, length 256":      "BF 81 48 82 01 00 " + repeat("05 00", 128),
	"[31] primitive, length 65536":       "9F 1F 83 01 00 00 " + repeat("00", 65536),
	"UNIVERSAL 31, primitive":            "1F 1F 00",
	"APPLICATION 40, constructed":        "7F 28 02 05 00",
	"PRIVATE 1000, primitive":            "DF 87 68 01 01",
	"PRIVATE 31, constructed":            "FF 1F 00",
	"several in a row":                   "9F 1F 00 BF 81 48 00 9F 1F 01 00 1F 1F 00",
	"high and low unknown tags together": "9F 1F 00 9E 00 BF 81 48 00",
}

// TestSkipsHighTagNumbers inserts each high-tag element, at the start and at
// the end, into every constructed element of every sample PDU, and compares
// the outcome with inserting an unknown low tag ([30]) at the same place:
// where the decoder skips the one (every SEQUENCE read by fields) it must
// skip the other and decode the sample's own value, and where it refuses the
// one (a CHOICE wrapper, a SEQUENCE OF) it must refuse the other. In every
// sample, the PDU envelope and the body of the command or response are
// such SEQUENCEs.
func TestSkipsHighTagNumbers(t *testing.T) {
	low := unhex("9E 01 00")
	for _, s := range wiretest.Samples() {
		orig := s.Bytes()
		want, err := s.Proto.Unmarshal(orig)
		if err != nil {
			t.Fatalf("%s %s: %v", s.Proto.Name, s.Name, err)
		}
		for target := 0; ; target++ {
			if insert(orig, target, false, nil) == nil {
				break
			}
			for _, atEnd := range []bool{false, true} {
				where := fmt.Sprintf("%s %s, constructed element %d, at the end %v", s.Proto.Name, s.Name, target, atEnd)
				_, lowErr := s.Proto.Unmarshal(insert(orig, target, atEnd, low))
				if (target == 0 || target == 2) && lowErr != nil {
					t.Fatalf("%s: unknown [30] refused: %v", where, lowErr)
				}
				for name, h := range highTagElements {
					b := insert(orig, target, atEnd, unhex(h))
					got, err := s.Proto.Unmarshal(b)
					switch {
					case (err == nil) != (lowErr == nil):
						t.Errorf("%s: %s: err %v, but with [30] instead: %v\n%x", where, name, err, lowErr, b)
					case err != nil && !errors.Is(err, wire.ErrMalformed):
						t.Errorf("%s: %s: err %v does not wrap ErrMalformed", where, name, err)
					case err == nil && !samePDU(got, want):
						t.Errorf("%s: %s: decoded %+v, want %+v", where, name, got, want)
					}
				}
			}
		}
	}
}

func samePDU(a, b *wire.PDU) bool {
	return a.ForceAbort == b.ForceAbort && a.Status == b.Status && equal(a.Command, b.Command) && equal(a.Response, b.Response)
}

// malformedHighTags are elements in the high-tag-number form that are not
// DER: each must be refused, wherever it stands, since the decoder cannot
// know where the next element starts or is asked to take what DER forbids.
var malformedHighTags = map[string]string{
	"tag number with a leading 0x80 octet":       "9F 80 1F 00",
	"[200] with a leading 0x80 octet":            "BF 80 81 48 00",
	"high form for [30]":                         "9F 1E 00",
	"high form for [0]":                          "9F 00 00",
	"high form for [1], constructed":             "BF 01 00",
	"identifier octet only":                      "9F",
	"tag number not terminated":                  "9F 81",
	"long tag number not terminated":             "BF 81 81 81",
	"no length":                                  "9F 1F",
	"no length after [200]":                      "BF 81 48",
	"indefinite length":                          "BF 1F 80 00 00",
	"long form for a length under 128":           "9F 1F 81 05 0102030405",
	"long form for length 0":                     "9F 1F 81 00",
	"long-form length with a leading zero octet": "9F 1F 82 00 80 " + repeat("AA", 128),
	"five length octets":                         "9F 1F 85 01 00 00 00 00",
	"length octets truncated":                    "9F 1F 82 01",
	"contents truncated":                         "9F 1F 05 0102",
	"constructed contents truncated":             "BF 81 48 03 05 00",
	"length 2^32-1":                              "9F 1F 84 FF FF FF FF 00",
}

// TestRefusesMalformedHighTags puts each malformed high-tag element at the
// end of the body of an RNAQP Authenticate and of the envelope of an MSRAP
// response, where an unknown [30] is skipped, and expects ErrMalformed.
func TestRefusesMalformedHighTags(t *testing.T) {
	auth := wire.MarshalCommand(&rnaqp.Authenticate{Account: "bob", Password: "pw"})
	resp := unhex("A2 0E 80 01 00 81 01 00 A2 06 A5 04 80 02 01 2C") // MSRAP QuerySizeOK
	for _, c := range []struct {
		what   string
		proto  *wire.Protocol
		pdu    []byte
		target int
	}{
		{"RNAQP Authenticate body", rnaqp.Protocol, auth, 2},
		{"MSRAP response envelope", msrap.Protocol, resp, 0},
	} {
		if _, err := c.proto.Unmarshal(insert(c.pdu, c.target, true, unhex("9E 00"))); err != nil {
			t.Fatalf("%s: unknown [30] refused: %v", c.what, err)
		}
		for name, h := range malformedHighTags {
			b := insert(c.pdu, c.target, true, unhex(h))
			if _, err := c.proto.Unmarshal(b); !errors.Is(err, wire.ErrMalformed) {
				t.Errorf("%s: %s: err = %v\n%x", c.what, name, err, b)
			}
		}
	}
	// The well-formed elements are taken in the same place: the refusals
	// above are for the encodings, not for the place.
	for name, h := range highTagElements {
		if _, err := rnaqp.Protocol.Unmarshal(insert(auth, 2, true, unhex(h))); err != nil {
			t.Errorf("%s refused: %v", name, err)
		}
	}
}

// TestHighTagGolden spells one case out byte by byte: RNAQP Authenticate
// {"bob", "pw"} with [31] (9F 1F), constructed [200] (BF 81 48) and
// PRIVATE 1000 (DF 87 68) elements among its fields.
func TestHighTagGolden(t *testing.T) {
	b := unhex("A1 1D A0 1B A0 19" +
		" 9F 1F 02 0102" + // [31] primitive, 2 octets
		" 80 03 626F62" + // account [0] "bob"
		" BF 81 48 03 02 01 07" + // [200] constructed, INTEGER 7 inside
		" 81 02 7077" + // password [1] "pw"
		" DF 87 68 00") // PRIVATE 1000, empty
	pdu, err := rnaqp.Protocol.Unmarshal(b)
	if err != nil {
		t.Fatal(err)
	}
	if a := pdu.Command.(*rnaqp.Authenticate); a.Account != "bob" || a.Password != "pw" {
		t.Fatalf("decoded %+v", a)
	}
	if !bytes.Equal(wire.MarshalCommand(pdu.Command), unhex("A1 0D A0 0B A0 09 80 03 626F62 81 02 7077")) {
		t.Fatal("re-encoding keeps an unknown element")
	}
}
