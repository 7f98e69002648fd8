package wire_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"net/netip"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"im2000/lib/wire"
	"im2000/lib/wire/msoap"
	"im2000/lib/wire/msrap"
	"im2000/lib/wire/rnaqp"
	"im2000/lib/wire/rnasp"
	"im2000/lib/wire/wiretest"
)

var protocols = []*wire.Protocol{msoap.Protocol, msrap.Protocol, rnasp.Protocol, rnaqp.Protocol}

// TestRoundTrip encodes every sample, decodes it, and checks that the value
// and the bytes come back the same; and that every alternative of every
// protocol has a sample.
func TestRoundTrip(t *testing.T) {
	covered := map[string]bool{}
	for _, s := range wiretest.Samples() {
		b := s.Bytes()
		pdu, err := s.Proto.Unmarshal(b)
		if err != nil {
			t.Errorf("%s %s: %v\n%x", s.Proto.Name, s.Name, err, b)
			continue
		}
		var got, want any = pdu.Command, s.Command
		kind := "command"
		if s.Command == nil {
			got, want, kind = pdu.Response, s.Response, "response"
			if pdu.ForceAbort != s.ForceAbort || pdu.Status != s.Status {
				t.Errorf("%s %s: forceabort/status %v/%d, want %v/%d", s.Proto.Name, s.Name, pdu.ForceAbort, pdu.Status, s.ForceAbort, s.Status)
			}
		}
		if !equal(got, want) {
			t.Errorf("%s %s: decoded %#v, want %#v", s.Proto.Name, s.Name, got, want)
		}
		again := pdu.Response
		if pdu.Command != nil {
			again = pdu.Command
			if !bytes.Equal(wire.MarshalCommand(again), b) {
				t.Errorf("%s %s: re-encoding differs", s.Proto.Name, s.Name)
			}
		} else if !bytes.Equal(wire.MarshalResponse(pdu.ForceAbort, pdu.Status, again), b) {
			t.Errorf("%s %s: re-encoding differs", s.Proto.Name, s.Name)
		}
		covered[s.Proto.Name+" "+kind+" "+string(rune('0'+want.(wire.Body).Alt()))] = true
	}
	for _, p := range protocols {
		for alt := range p.Commands {
			if !covered[p.Name+" command "+string(rune('0'+alt))] {
				t.Errorf("%s command [%d] has no sample", p.Name, alt)
			}
		}
		for alt := range p.Responses {
			if !covered[p.Name+" response "+string(rune('0'+alt))] {
				t.Errorf("%s response [%d] has no sample", p.Name, alt)
			}
		}
	}
}

// equal compares decoded values, taking an absent SEQUENCE OF (nil) and an
// empty one as the same, as the encoding does.
func equal(a, b any) bool {
	return reflect.DeepEqual(normalize(reflect.ValueOf(a)), normalize(reflect.ValueOf(b)))
}

func normalize(v reflect.Value) any {
	switch v.Kind() {
	case reflect.Invalid:
		return nil
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return nil
		}
		return normalize(v.Elem())
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return string(v.Bytes())
		}
		out := []any{}
		for i := 0; i < v.Len(); i++ {
			out = append(out, normalize(v.Index(i)))
		}
		return out
	case reflect.Struct:
		if v.Type().PkgPath() == "net/netip" {
			return v.Interface()
		}
		out := map[string]any{"type": v.Type().String()}
		for i := 0; i < v.NumField(); i++ {
			out[v.Type().Field(i).Name] = normalize(v.Field(i))
		}
		return out
	}
	return v.Interface()
}

func unhex(s string) []byte {
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		panic(err)
	}
	return b
}

// TestGolden checks one PDU of each protocol against bytes written out by
// hand from the DER rules:
//
// MSOAP command Track{identifier 00 01 .. 0f}:
//
//	80 10 <16 octets>   identifier [0] IMPLICIT OCTET STRING
//	A3 12               track [3] IMPLICIT CommandTrack (a SEQUENCE, constructed)
//	A0 14               commanddata [0], explicit around the CHOICE
//	A1 16               command [1] IMPLICIT Command
//
// MSRAP response QuerySize{size 300}, noerror, no forceabort:
//
//	80 01 00            forceabort [0] IMPLICIT BOOLEAN FALSE
//	81 01 00            status [1] IMPLICIT ENUMERATED noerror
//	80 02 01 2C         size [0] IMPLICIT INTEGER 300 (0x012C)
//	A5 04               querysize [5] IMPLICIT ResponseQuerySize
//	A2 06               responsedata [2], explicit around the CHOICE
//	A2 0E               response [2] IMPLICIT Response (3 + 3 + 8 octets)
//
// RNASP command Notify with one notification for bob@example.org from
// "a@b", store 127.0.0.1:4000, identifier AA x16, no size:
//
//	80 04 7F 00 00 01   version4 [0] IMPLICIT OCTET STRING
//	A0 06               address [0], explicit around IPAddress
//	81 02 0F A0         port [1] IMPLICIT INTEGER 4000
//	30 0C               IPAddressAndPort
//	A0 0E               literals [0] IMPLICIT SEQUENCE OF
//	A0 10               storeclear [0], explicit around ServiceLocation
//	80 03 "bob"         localpart [0] IMPLICIT UTF8String
//	16 07 "example" 16 03 "org"   labels, UTF8String = [UNIVERSAL 22]
//	A1 0E               domain [1] IMPLICIT DomainName
//	A2 15               recipient [2] IMPLICIT MailBox
//	83 10 AA..AA        identifier [3]
//	84 03 "a@b"         sender [4]
//	30 40               Notification (18 + 23 + 18 + 5 = 64 octets)
//	A0 42 / A0 44 / A0 46 / A1 48   notifications, notify, commanddata, command
//
// RNAQP command Authenticate{"bob", "pw"}:
//
//	80 03 62 6F 62  81 02 70 77   account [0], password [1]
//	A0 09 / A0 0B / A1 0D         authenticate [0], commanddata [0], command [1]
func TestGolden(t *testing.T) {
	aa := wiretest.ID(0xAA)
	for i := range aa {
		aa[i] = 0xAA
	}
	cases := []struct {
		name  string
		proto *wire.Protocol
		got   []byte
		want  string
	}{
		{"MSOAP track", msoap.Protocol, wire.MarshalCommand(&msoap.Track{ID: wiretest.ID(0)}),
			"A1 16 A0 14 A3 12 80 10 000102030405060708090A0B0C0D0E0F"},
		{"MSRAP querysize response", msrap.Protocol, wire.MarshalResponse(false, msrap.NoError, &msrap.QuerySizeOK{Size: 300}),
			"A2 0E 80 01 00 81 01 00 A2 06 A5 04 80 02 01 2C"},
		{"RNASP notify", rnasp.Protocol, wire.MarshalCommand(&rnasp.Notify{Notifications: []rnasp.Notification{{
			StoreClear: wire.ServiceLocation{Literals: []wire.AddrPort{netipAP("127.0.0.1:4000")}},
			Recipient:  wire.MailBox{Local: "bob", Domain: wire.DomainName{"example", "org"}},
			ID:         aa, Sender: "a@b"}}}),
			"A1 48 A0 46 A0 44 A0 42 30 40" +
				" A0 10 A0 0E 30 0C A0 06 80 04 7F000001 81 02 0FA0" +
				" A2 15 80 03 626F62 A1 0E 16 07 6578616D706C65 16 03 6F7267" +
				" 83 10 AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" +
				" 84 03 614062"},
		{"RNAQP authenticate", rnaqp.Protocol, wire.MarshalCommand(&rnaqp.Authenticate{Account: "bob", Password: "pw"}),
			"A1 0D A0 0B A0 09 80 03 626F62 81 02 7077"},
	}
	for _, c := range cases {
		want := unhex(c.want)
		if !bytes.Equal(c.got, want) {
			t.Errorf("%s:\n got %X\nwant %X", c.name, c.got, want)
		}
		if _, err := c.proto.Unmarshal(want); err != nil {
			t.Errorf("%s: golden bytes do not decode: %v", c.name, err)
		}
	}
}

func TestRejects(t *testing.T) {
	cases := map[string]string{
		"empty":                    "",
		"trailing bytes":           "A1 0D A0 0B A0 09 80 03 626F62 81 02 7077 00",
		"unknown alternative":      "A1 04 A0 02 A5 00",
		"primitive alternative":    "A1 04 A0 02 80 00",
		"missing password":         "A1 09 A0 07 A0 05 80 03 626F62",
		"two choices":              "A1 08 A0 06 A1 00 A1 00 A1 00",
		"non-minimal length":       "A1 81 0D A0 0B A0 09 80 03 626F62 81 02 7077",
		"bad boolean":              "A2 0B 80 01 01 81 01 00 A2 03 A0 01 00",
		"negative status":          "A2 0A 80 01 00 81 01 FF A2 02 A0 00",
		"status out of range":      "A2 0A 80 01 00 81 01 08 A2 02 A0 00",
		"padded integer":           "A2 0B 80 01 00 81 02 0000 A2 02 A0 00",
		"duplicate field":          "A1 12 A0 10 A0 0E 80 03 626F62 81 02 7077 81 02 7077",
		"neither command nor resp": "A3 00",
	}
	for name, h := range cases {
		if _, err := rnaqp.Protocol.Unmarshal(unhex(h)); err == nil || !errors.Is(err, wire.ErrMalformed) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
	// A short identifier is refused.
	if _, err := msoap.Protocol.Unmarshal(unhex("A1 08 A0 06 A3 04 80 02 0001")); err == nil {
		t.Error("15-octet identifier accepted")
	}
}

// TestSkipsUnknownElements: an element with a tag the decoder does not know
// is skipped, in a command body and in the response envelope.
func TestSkipsUnknownElements(t *testing.T) {
	// Authenticate with an extra [9] element and a universal INTEGER.
	pdu, err := rnaqp.Protocol.Unmarshal(unhex("A1 14 A0 12 A0 10 80 03 626F62 89 02 FFFF 81 02 7077 02 01 05"))
	if err != nil {
		t.Fatal(err)
	}
	if a := pdu.Command.(*rnaqp.Authenticate); a.Account != "bob" || a.Password != "pw" {
		t.Fatalf("decoded %+v", a)
	}
	// A response with an extra constructed [7] in the envelope.
	pdu, err = msrap.Protocol.Unmarshal(unhex("A2 12 80 01 00 81 01 00 A7 02 0500 A2 06 A5 04 80 02 01 2C"))
	if err != nil || pdu.Response.(*msrap.QuerySizeOK).Size != 300 {
		t.Fatalf("decoded %+v, %v", pdu, err)
	}
}

func TestFraming(t *testing.T) {
	var buf bytes.Buffer
	wire.WriteFrame(&buf, []byte("abc"))
	if !bytes.Equal(buf.Bytes(), []byte{0, 0, 0, 3, 'a', 'b', 'c'}) {
		t.Fatalf("frame = %x", buf.Bytes())
	}
	got, err := wire.ReadFrame(&buf, 3)
	if err != nil || string(got) != "abc" {
		t.Fatalf("ReadFrame = %q, %v", got, err)
	}
	buf.Reset()
	wire.WriteFrame(&buf, []byte("abcd"))
	if _, err := wire.ReadFrame(&buf, 3); !errors.Is(err, wire.ErrTooLong) {
		t.Fatalf("over the limit: %v", err)
	}
	if _, err := wire.ReadFrame(bytes.NewReader([]byte{0, 0, 0, 9, 1}), 100); err == nil {
		t.Fatal("short body accepted")
	}
	// A huge length prefix must fail without allocating for it.
	huge := []byte{0xff, 0xff, 0xff, 0xff}
	if _, err := wire.ReadFrame(bytes.NewReader(huge), wire.DefaultMaxPDU); !errors.Is(err, wire.ErrTooLong) {
		t.Fatalf("4 GiB prefix: %v", err)
	}
	r := bytes.NewReader(huge)
	var mem runtime.MemStats
	runtime.ReadMemStats(&mem)
	before := mem.TotalAlloc
	for i := 0; i < 100; i++ {
		r.Reset(huge)
		wire.ReadFrame(r, wire.DefaultMaxPDU)
	}
	runtime.ReadMemStats(&mem)
	if grown := mem.TotalAlloc - before; grown > 100*1024 {
		t.Fatalf("100 oversized prefixes allocated %d bytes", grown)
	}
}

func netipAP(s string) wire.AddrPort { return netip.MustParseAddrPort(s) }
