package wire

import (
	"bytes"
	"encoding/asn1"
	"testing"

	"golang.org/x/crypto/cryptobyte"
)

// FuzzSkipHighTag checks skipHighTag against encoding/asn1's DER parser,
// an independent reading of X.690 that knows the high-tag-number form: on
// every element in that form within the bounds both share (tag numbers of
// at most four octets, lengths of at most three), they must agree on
// whether it is well-formed and on where it ends.
func FuzzSkipHighTag(f *testing.F) {
	for _, s := range []string{
		"\x9f\x1f\x00", "\xbf\x1f\x02\x05\x00rest", "\x9f\x81\x48\x01\xff", "\x9f\x80\x1f\x00",
		"\x9f\x1e\x00", "\x9f\x1f\x81\x05abcde", "\x9f\x1f\x81\x80" + string(make([]byte, 128)),
		"\x9f\x1f\x82\x00\x80", "\xbf\x1f\x80\x00\x00", "\x9f\x1f\x05ab", "\x1f\x8f\xff\x7f\x00",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 || data[0]&0x1f != 0x1f {
			return
		}
		i := 1
		for i < len(data) && data[i]&0x80 != 0 {
			i++
		}
		if i > 4 || i+1 < len(data) && data[i+1] > 0x83 {
			return // beyond encoding/asn1's bounds or ours
		}
		s := cryptobyte.String(data)
		ok := skipHighTag(&s)
		var raw asn1.RawValue
		rest, err := asn1.Unmarshal(data, &raw)
		if ok != (err == nil) {
			t.Fatalf("%x: skipHighTag %v, encoding/asn1 %v", data, ok, err)
		}
		if ok && !bytes.Equal(s, rest) {
			t.Fatalf("%x: skipHighTag leaves %x, encoding/asn1 %x", data, []byte(s), rest)
		}
	})
}
