package locate

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// TestAddressNotDomain: an address without its port (a setting such as
// rna written "127.0.0.1") is refused as an address, permanently, before
// any DNS question, rather than looked up as a domain.
func TestAddressNotDomain(t *testing.T) {
	l := &Locator{} // no resolvers: a DNS question would fail otherwise
	for _, d := range []string{"127.0.0.1", "::1", "[2001:db8::1]", "192.0.2.1.", "mx.example.org:"} {
		_, err := l.Targets(context.Background(), "rnaqp", d)
		if !errors.Is(err, ErrBadDomain) || !strings.Contains(err.Error(), "port") {
			t.Errorf("%s: %v", d, err)
		}
	}
	if _, err := l.Targets(context.Background(), "rnaqp", "example.org"); errors.Is(err, ErrBadDomain) || !strings.Contains(err.Error(), "no DNS resolvers") {
		t.Errorf("a domain: %v", err)
	}
}
