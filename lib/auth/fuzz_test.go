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

// FuzzParseBucket: whatever a bucket file holds, it parses without panic
// into at most maxAddrs records, and reads back the same.
func FuzzParseBucket(f *testing.F) {
	f.Add([]byte("192.0.2.1 next 1700000000000000000\n192.0.2.1 other 2 1700000000\n2001_db8__-64 account alice 3 1700000000\n"))
	f.Add([]byte("next 1\nbad/key other 1 1\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		bk := parseBucket(b)
		if len(bk) > maxAddrs {
			t.Fatalf("%d records", len(bk))
		}
		if again := parseBucket(bk.encode()); !bytes.Equal(again.encode(), bk.encode()) {
			t.Fatalf("%q reads back as %q", bk.encode(), again.encode())
		}
	})
}

// FuzzParseFrontends: the setting authfrontends parses without panic,
// and what it accepts are valid prefixes.
func FuzzParseFrontends(f *testing.F) {
	f.Add("127.0.0.1 ::1\n2001:db8::/64")
	f.Add("10.0.0.0/33 x")
	f.Fuzz(func(t *testing.T, s string) {
		ps, err := ParseFrontends(s)
		for _, p := range ps {
			if err == nil && !p.IsValid() {
				t.Fatalf("%q: invalid prefix %v", s, p)
			}
		}
	})
}
