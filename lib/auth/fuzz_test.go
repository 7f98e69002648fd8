package auth

import (
	"bytes"
	"testing"
)

// FuzzParseRecord: whatever a failure file holds, it parses without
// panic, and what it parses to reads back the same.
func FuzzParseRecord(f *testing.F) {
	f.Add([]byte("next 1700000000000000000\nother 2 1700000000\naccount alice 3 1700000000\n"))
	f.Add([]byte("3 1700000000\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r := parseRecord(b)
		again := parseRecord(r.encode())
		if !bytes.Equal(again.encode(), r.encode()) {
			t.Fatalf("%q reads back as %q", r.encode(), again.encode())
		}
	})
}
