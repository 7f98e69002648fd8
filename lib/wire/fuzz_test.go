package wire_test

import (
	"bytes"
	"testing"

	"im2000/lib/wire"
	"im2000/lib/wire/msoap"
	"im2000/lib/wire/msrap"
	"im2000/lib/wire/rnaqp"
	"im2000/lib/wire/rnasp"
	"im2000/lib/wire/wiretest"
)

// fuzzDecoder checks that the decoder never panics, and that whatever it
// accepts re-encodes to bytes it decodes to the same value (unknown
// elements dropped on the way), and that this encoding is stable.
func fuzzDecoder(f *testing.F, p *wire.Protocol) {
	for _, s := range wiretest.Samples() {
		if s.Proto == p {
			f.Add(s.Bytes())
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		pdu, err := p.Unmarshal(data)
		if err != nil {
			return
		}
		enc := func(pdu *wire.PDU) []byte {
			if pdu.Command != nil {
				return wire.MarshalCommand(pdu.Command)
			}
			return wire.MarshalResponse(pdu.ForceAbort, pdu.Status, pdu.Response)
		}
		b := enc(pdu)
		again, err := p.Unmarshal(b)
		if err != nil {
			t.Fatalf("re-encoding of an accepted PDU does not decode: %v\nin  %x\nout %x", err, data, b)
		}
		if !equal(again.Command, pdu.Command) || !equal(again.Response, pdu.Response) || again.Status != pdu.Status || again.ForceAbort != pdu.ForceAbort {
			t.Fatalf("value changed across re-encoding\nin  %x\nout %x", data, b)
		}
		if !bytes.Equal(enc(again), b) {
			t.Fatalf("encoding not stable")
		}
	})
}

func FuzzMSOAP(f *testing.F) { fuzzDecoder(f, msoap.Protocol) }
func FuzzMSRAP(f *testing.F) { fuzzDecoder(f, msrap.Protocol) }
func FuzzRNASP(f *testing.F) { fuzzDecoder(f, rnasp.Protocol) }
func FuzzRNAQP(f *testing.F) { fuzzDecoder(f, rnaqp.Protocol) }

// FuzzFrame reads frames from arbitrary bytes with a small limit: no panic,
// and never a frame over the limit.
func FuzzFrame(f *testing.F) {
	f.Add([]byte{0, 0, 0, 3, 'a', 'b', 'c'})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		for {
			b, err := wire.ReadFrame(r, 64)
			if err != nil {
				return
			}
			if len(b) > 64 {
				t.Fatalf("frame of %d octets over the limit", len(b))
			}
		}
	})
}
