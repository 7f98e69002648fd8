package locate

import (
	"fmt"
	"net/netip"
	"strings"
)

// notAddress refuses to look up an address as a domain. A setting that
// takes "host:port, or a domain" (rna, remote, storelocation, a listfile's
// store) and was given an address without its port would otherwise be
// asked of the DNS as a domain, and fail as one that has no service or
// does not exist, which sends the admin looking in the wrong place. The
// error wraps ErrBadDomain: the same setting fails the same way until it
// is fixed.
func notAddress(domain string) error {
	d := strings.TrimSuffix(strings.TrimPrefix(strings.TrimSuffix(domain, "]"), "["), ".")
	if _, err := netip.ParseAddr(d); err == nil {
		return notDomain(fmt.Sprintf("%q is an address, not a domain: write it with its port, as host:port", domain))
	}
	if strings.Contains(domain, ":") {
		return notDomain(fmt.Sprintf("%q is not a domain, nor host:port with a port number", domain))
	}
	return nil
}

// notDomain is ErrBadDomain (permanent) in what callers check, but says
// only its own words: not "domain does not exist", which would mislead.
type notDomain string

func (e notDomain) Error() string { return string(e) }
func (e notDomain) Unwrap() error { return ErrBadDomain }
