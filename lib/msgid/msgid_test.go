package msgid

import "testing"

func TestRoundTrip(t *testing.T) {
	a, b := New(), New()
	if a == b {
		t.Fatal("two fresh ids are equal")
	}
	s := a.String()
	if len(s) != 32 {
		t.Fatalf("len(%q) = %d", s, len(s))
	}
	back, err := Parse(s)
	if err != nil || back != a {
		t.Fatalf("Parse(%q) = %v, %v", s, back, err)
	}
}

func TestParseRejects(t *testing.T) {
	for _, s := range []string{"", "00", "0123456789ABCDEF0123456789abcdef", "0123456789abcdef0123456789abcdeg", "0123456789abcdef0123456789abcdef0"} {
		if _, err := Parse(s); err == nil {
			t.Errorf("Parse(%q) accepted", s)
		}
	}
}
