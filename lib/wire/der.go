// Package wire is the common part of the four IM2000 protocols (DESIGN.md
// section 3, spec/im2000-profile.asn1): DER encoding of the shared types,
// the PDU envelope every protocol uses (a command or a response with
// forceabort and status), and the 4-octet length framing on a stream.
// The protocols' own commands and responses live in lib/wire/msoap,
// lib/wire/msrap, lib/wire/rnasp and lib/wire/rnaqp.
//
// Decoding is strict DER where it matters (minimal lengths and integers,
// BOOLEAN as 00 or FF) and lenient where the profile asks for it: elements
// of a SEQUENCE with tags the decoder does not know are skipped.
package wire

import (
	"errors"
	"fmt"

	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/cryptobyte/asn1"
)

// ErrMalformed is wrapped by every decoding error.
var ErrMalformed = errors.New("malformed PDU")

func malformed(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, a...))
}

// Context-specific tags, primitive and constructed.
func ctx(n int) asn1.Tag  { return asn1.Tag(n).ContextSpecific() }
func cctx(n int) asn1.Tag { return asn1.Tag(n).ContextSpecific().Constructed() }

// UTF8String as the profile defines it: [UNIVERSAL 22] IMPLICIT OCTET STRING.
const tagUTF8 = asn1.Tag(22)

// AddUint adds [n] IMPLICIT INTEGER or ENUMERATED with a non-negative value.
func AddUint(b *cryptobyte.Builder, n int, v uint64) {
	b.AddASN1(ctx(n), func(b *cryptobyte.Builder) { b.AddBytes(uintContent(v)) })
}

func uintContent(v uint64) []byte {
	var buf [9]byte
	i := len(buf)
	for {
		i--
		buf[i] = byte(v)
		v >>= 8
		if v == 0 {
			break
		}
	}
	if buf[i]&0x80 != 0 { // keep it positive
		i--
		buf[i] = 0
	}
	return buf[i:]
}

// AddBool adds [n] IMPLICIT BOOLEAN.
func AddBool(b *cryptobyte.Builder, n int, v bool) {
	b.AddASN1(ctx(n), func(b *cryptobyte.Builder) {
		if v {
			b.AddUint8(0xff)
		} else {
			b.AddUint8(0)
		}
	})
}

// AddBytes adds [n] IMPLICIT OCTET STRING (or UTF8String).
func AddBytes(b *cryptobyte.Builder, n int, v []byte) {
	b.AddASN1(ctx(n), func(b *cryptobyte.Builder) { b.AddBytes(v) })
}

// AddSeq adds [n] IMPLICIT SEQUENCE (or SEQUENCE OF), or an explicit [n]
// wrapper, whose contents f adds.
func AddSeq(b *cryptobyte.Builder, n int, f func(*cryptobyte.Builder)) {
	b.AddASN1(cctx(n), f)
}

// parseUint reads the contents of a non-negative INTEGER or ENUMERATED.
func parseUint(c []byte) (uint64, error) {
	switch {
	case len(c) == 0:
		return 0, malformed("empty integer")
	case c[0]&0x80 != 0:
		return 0, malformed("negative integer")
	case len(c) > 1 && c[0] == 0 && c[1]&0x80 == 0:
		return 0, malformed("integer not minimally encoded")
	case len(c) > 9 || len(c) == 9 && c[0] != 0:
		return 0, malformed("integer too large")
	}
	var v uint64
	for _, x := range c {
		v = v<<8 | uint64(x)
	}
	return v, nil
}

// Fields reads the elements of one SEQUENCE by tag, in any order, skipping
// elements whose tags it is not asked for (forward compatibility). The
// first error sticks; check Err once after reading every field.
type Fields struct {
	els []element
	buf [8]element // most SEQUENCEs have few elements: no allocation for them
	err error
}

type element struct {
	n           int
	constructed bool
	content     []byte
}

// ReadFields splits the contents of a SEQUENCE into its elements.
func ReadFields(s cryptobyte.String) *Fields {
	f := &Fields{}
	f.els = f.buf[:0]
	for !s.Empty() {
		if s[0]&0x1f == 0x1f {
			// A tag number of 31 or more: never ours, and cryptobyte does
			// not read the high-tag-number form, so skip it here.
			if !skipHighTag(&s) {
				f.err = malformed("bad element with a high tag number in SEQUENCE")
				return f
			}
			continue
		}
		var el cryptobyte.String
		var tag asn1.Tag
		if !s.ReadAnyASN1(&el, &tag) {
			f.err = malformed("bad element in SEQUENCE")
			return f
		}
		if tag&0xc0 != 0x80 {
			continue // not context-specific: never ours
		}
		n := int(tag & 0x1f)
		if f.find(n) != nil {
			f.fail(malformed("tag [%d] twice in SEQUENCE", n))
		}
		f.els = append(f.els, element{n: n, constructed: tag&0x20 != 0, content: el})
	}
	return f
}

// skipHighTag skips one element whose identifier is in the high-tag-number
// form (X.690 8.1.2.4), of any class, primitive or constructed, without
// looking inside it, and reports whether it was well-formed DER: the tag
// number in the fewest octets (no leading 0x80 octet, and 31 or more, since
// smaller numbers take the one-octet form), a definite length in the fewest
// octets (at most 4 of them, as cryptobyte reads lengths), and all of its
// contents present.
func skipHighTag(s *cryptobyte.String) bool {
	b := *s
	i := 1 // after the identifier octet
	if i >= len(b) || b[i] == 0x80 {
		return false
	}
	for b[i]&0x80 != 0 { // base 128, bit 8 set on all but the last octet
		i++
		if i >= len(b) {
			return false
		}
	}
	if i == 1 && b[1] < 31 {
		return false
	}
	i++
	if i >= len(b) {
		return false
	}
	l := b[i]
	i++
	n := uint64(l)
	if l&0x80 != 0 {
		k := int(l & 0x7f)
		if k == 0 || k > 4 || len(b)-i < k || b[i] == 0 {
			return false // indefinite (not DER), too long, truncated, or padded
		}
		n = 0
		for _, x := range b[i : i+k] {
			n = n<<8 | uint64(x)
		}
		i += k
		if n < 0x80 {
			return false // should have been the short form
		}
	}
	if uint64(len(b)-i) < n {
		return false
	}
	*s = b[i+int(n):]
	return true
}

func (f *Fields) find(n int) *element {
	for i := range f.els {
		if f.els[i].n == n {
			return &f.els[i]
		}
	}
	return nil
}

// Err is the first error met.
func (f *Fields) Err() error { return f.err }

func (f *Fields) fail(err error) {
	if f.err == nil {
		f.err = err
	}
}

// Has reports whether element [n] is present (primitive or constructed).
func (f *Fields) Has(n int) bool { return f.find(n) != nil }

// get returns the contents of required element [n], which must be
// constructed or primitive as said.
func (f *Fields) get(n int, constructed bool) ([]byte, bool) {
	e := f.find(n)
	switch {
	case e == nil:
		f.fail(malformed("required element [%d] missing", n))
	case e.constructed != constructed:
		f.fail(malformed("[%d] has the wrong form (constructed or primitive)", n))
	default:
		return e.content, true
	}
	return nil, false
}

func (f *Fields) primitive(n int) ([]byte, bool) { return f.get(n, false) }

// Uint reads required [n] IMPLICIT INTEGER (0..MAX) or ENUMERATED.
func (f *Fields) Uint(n int) uint64 {
	c, ok := f.primitive(n)
	if !ok {
		return 0
	}
	v, err := parseUint(c)
	if err != nil {
		f.fail(fmt.Errorf("[%d]: %w", n, err))
	}
	return v
}

// UintMax reads [n] like Uint and refuses values above max.
func (f *Fields) UintMax(n int, max uint64) uint64 {
	v := f.Uint(n)
	if v > max {
		f.fail(malformed("[%d]: %d out of range (max %d)", n, v, max))
		return 0
	}
	return v
}

// Bool reads required [n] IMPLICIT BOOLEAN.
func (f *Fields) Bool(n int) bool {
	c, ok := f.primitive(n)
	if !ok {
		return false
	}
	if len(c) != 1 || c[0] != 0 && c[0] != 0xff {
		f.fail(malformed("[%d]: BOOLEAN must be one octet 00 or FF", n))
		return false
	}
	return c[0] == 0xff
}

// Bytes reads required [n] IMPLICIT OCTET STRING (or UTF8String).
func (f *Fields) Bytes(n int) []byte {
	c, _ := f.primitive(n)
	return c
}

// Seq returns the contents of required constructed element [n].
func (f *Fields) Seq(n int) cryptobyte.String {
	c, _ := f.get(n, true)
	return c
}

// Empty checks that element [n], an empty SEQUENCE, is present.
func (f *Fields) Empty(n int) { f.Seq(n) }

// Each calls fn with the contents of every element of a SEQUENCE OF whose
// elements have tag t, stopping at the first error.
func Each(s cryptobyte.String, t asn1.Tag, fn func(cryptobyte.String) error) error {
	for !s.Empty() {
		var el cryptobyte.String
		if !s.ReadASN1(&el, t) {
			return malformed("SEQUENCE OF: element is not %#x", uint8(t))
		}
		if err := fn(el); err != nil {
			return err
		}
	}
	return nil
}

// Choice reads an explicit [n] wrapper around a CHOICE: exactly one element,
// which must be context-specific; it returns its tag number and contents.
func Choice(s cryptobyte.String) (n int, constructed bool, body cryptobyte.String, err error) {
	var tag asn1.Tag
	if !s.ReadAnyASN1(&body, &tag) || !s.Empty() {
		return 0, false, nil, malformed("CHOICE must hold exactly one element")
	}
	if tag&0xc0 != 0x80 || tag&0x1f == 0x1f {
		return 0, false, nil, malformed("CHOICE alternative has tag %#x", uint8(tag))
	}
	return int(tag & 0x1f), tag&0x20 != 0, body, nil
}
