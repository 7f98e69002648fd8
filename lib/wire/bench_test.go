package wire_test

import (
	"testing"

	"im2000/lib/wire"
	"im2000/lib/wire/rnasp"
	"im2000/lib/wire/wiretest"
)

func notify1000() *rnasp.Notify {
	n := &rnasp.Notify{}
	for i := 0; i < 1000; i++ {
		x := wiretest.Notification()
		x.ID = wiretest.ID(byte(i))
		n.Notifications = append(n.Notifications, x)
	}
	return n
}

// BenchmarkNotify1000Encode encodes a CommandNotify of 1,000 notifications.
func BenchmarkNotify1000Encode(b *testing.B) {
	n := notify1000()
	b.ReportAllocs()
	var size int
	for b.Loop() {
		size = len(wire.MarshalCommand(n))
	}
	b.SetBytes(int64(size))
}

// BenchmarkNotify1000Decode decodes it.
func BenchmarkNotify1000Decode(b *testing.B) {
	pdu := wire.MarshalCommand(notify1000())
	b.ReportAllocs()
	b.SetBytes(int64(len(pdu)))
	for b.Loop() {
		if _, err := rnasp.Protocol.Unmarshal(pdu); err != nil {
			b.Fatal(err)
		}
	}
}
