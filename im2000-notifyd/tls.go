package main

import (
	"fmt"

	"im2000/lib/conf"
	"im2000/lib/wire"
)

// storeSSL reads storessl: where recipients reach this store's MSRAP over
// TLS (host:port, or a domain with _msraps._tcp records), sent in every
// notification beside storelocation so that readers can prefer it. A
// reader verifies a literal storessl's certificate for the sender's
// domain, so the certificate must name the domains of the accounts here.
func storeSSL(d conf.Dir) (*wire.ServiceLocation, error) {
	where, err := d.Str("storessl")
	if err != nil || where == "" {
		return nil, err
	}
	l, err := wire.ParseLocation(where)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", d.Path("storessl"), err)
	}
	return &l, nil
}
