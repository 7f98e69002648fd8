package wire

import (
	"fmt"
	"net/netip"
	"strings"

	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/cryptobyte/asn1"

	"im2000/lib/addr"
	"im2000/lib/msgid"
)

// DomainName is a domain as a sequence of labels, most specific first.
type DomainName []string

// AddDomain adds [n] IMPLICIT DomainName.
func AddDomain(b *cryptobyte.Builder, n int, d DomainName) {
	AddSeq(b, n, func(b *cryptobyte.Builder) { addLabels(b, d) })
}

func addLabels(b *cryptobyte.Builder, d DomainName) {
	for _, l := range d {
		b.AddASN1(tagUTF8, func(b *cryptobyte.Builder) { b.AddBytes([]byte(l)) })
	}
}

func parseLabels(s cryptobyte.String) (DomainName, error) {
	d := DomainName{}
	err := Each(s, tagUTF8, func(l cryptobyte.String) error {
		d = append(d, string(l))
		return nil
	})
	return d, err
}

// Domain reads required [n] IMPLICIT DomainName.
func (f *Fields) Domain(n int) DomainName {
	d, err := parseLabels(f.Seq(n))
	if err != nil {
		f.fail(err)
	}
	return d
}

// MailBox is the wire form of an address. It is kept as sent; callers turn
// it into an addr.Mailbox (and so validate it) with Addr.
type MailBox struct {
	Local  string
	Domain DomainName
}

// FromAddr converts a checked address.
func FromAddr(a addr.Mailbox) MailBox { return MailBox{Local: a.Local, Domain: a.Labels()} }

// Addr validates the mailbox.
func (m MailBox) Addr() (addr.Mailbox, error) { return addr.New(m.Local, m.Domain) }

func (m MailBox) marshal(b *cryptobyte.Builder) {
	AddBytes(b, 0, []byte(m.Local))
	AddDomain(b, 1, m.Domain)
}

// AddMailBox adds [n] IMPLICIT MailBox.
func AddMailBox(b *cryptobyte.Builder, n int, m MailBox) { AddSeq(b, n, m.marshal) }

// AddMailBoxes adds [n] IMPLICIT SEQUENCE OF MailBox.
func AddMailBoxes(b *cryptobyte.Builder, n int, ms []MailBox) {
	AddSeq(b, n, func(b *cryptobyte.Builder) {
		for _, m := range ms {
			b.AddASN1(asn1.SEQUENCE, m.marshal)
		}
	})
}

func parseMailBox(s cryptobyte.String) (MailBox, error) {
	f := ReadFields(s)
	m := MailBox{Local: string(f.Bytes(0)), Domain: f.Domain(1)}
	return m, f.Err()
}

// MailBox reads required [n] IMPLICIT MailBox.
func (f *Fields) MailBox(n int) MailBox {
	m, err := parseMailBox(f.Seq(n))
	if err != nil {
		f.fail(err)
	}
	return m
}

// MailBoxes reads [n] IMPLICIT SEQUENCE OF MailBox; absent gives nil.
func (f *Fields) MailBoxes(n int) []MailBox {
	if !f.Has(n) {
		return nil
	}
	var ms []MailBox
	f.fail(Each(f.Seq(n), asn1.SEQUENCE, func(s cryptobyte.String) error {
		m, err := parseMailBox(s)
		ms = append(ms, m)
		return err
	}))
	return ms
}

// AddID adds [n] IMPLICIT MessageIdentifier.
func AddID(b *cryptobyte.Builder, n int, id msgid.ID) { AddBytes(b, n, id[:]) }

// ID reads required [n] IMPLICIT MessageIdentifier.
func (f *Fields) ID(n int) msgid.ID {
	c, ok := f.primitive(n)
	if !ok {
		return msgid.ID{}
	}
	id, err := msgid.FromBytes(c)
	if err != nil {
		f.fail(malformed("[%d]: %v", n, err))
	}
	return id
}

// AddIDs adds [n] IMPLICIT SEQUENCE OF MessageIdentifier.
func AddIDs(b *cryptobyte.Builder, n int, ids []msgid.ID) {
	AddSeq(b, n, func(b *cryptobyte.Builder) {
		for _, id := range ids {
			b.AddASN1OctetString(id[:])
		}
	})
}

// IDs reads required [n] IMPLICIT SEQUENCE OF MessageIdentifier.
func (f *Fields) IDs(n int) []msgid.ID {
	var ids []msgid.ID
	f.fail(Each(f.Seq(n), asn1.OCTET_STRING, func(s cryptobyte.String) error {
		id, err := msgid.FromBytes(s)
		if err != nil {
			return malformed("%v", err)
		}
		ids = append(ids, id)
		return nil
	}))
	return ids
}

// AddEnums adds [n] IMPLICIT SEQUENCE OF ENUMERATED.
func AddEnums(b *cryptobyte.Builder, n int, vs []uint64) {
	AddSeq(b, n, func(b *cryptobyte.Builder) {
		for _, v := range vs {
			b.AddASN1(asn1.ENUM, func(b *cryptobyte.Builder) { b.AddBytes(uintContent(v)) })
		}
	})
}

// Enums reads [n] IMPLICIT SEQUENCE OF ENUMERATED, each at most max;
// absent gives nil.
func (f *Fields) Enums(n int, max uint64) []uint64 {
	if !f.Has(n) {
		return nil
	}
	vs := []uint64{}
	f.fail(Each(f.Seq(n), asn1.ENUM, func(s cryptobyte.String) error {
		v, err := parseUint(s)
		if err == nil && v > max {
			err = malformed("enumerated value %d out of range", v)
		}
		vs = append(vs, v)
		return err
	}))
	return vs
}

// AddrPort is IPAddressAndPort.
type AddrPort = netip.AddrPort

// addIP adds the explicit [n] wrapper around an IPAddress CHOICE.
func addIP(b *cryptobyte.Builder, n int, a netip.Addr) {
	AddSeq(b, n, func(b *cryptobyte.Builder) {
		if a.Is4() {
			AddBytes(b, 0, a.AsSlice())
		} else {
			a16 := a.As16()
			AddBytes(b, 1, a16[:])
		}
	})
}

func (f *Fields) ip(n int) netip.Addr {
	alt, cons, body, err := Choice(f.Seq(n))
	if f.err != nil {
		return netip.Addr{}
	}
	switch {
	case err != nil:
		f.fail(err)
	case cons || alt > 1 || alt == 0 && len(body) != 4 || alt == 1 && len(body) != 16:
		f.fail(malformed("[%d]: bad IPAddress", n))
	default:
		a, _ := netip.AddrFromSlice(body)
		return a
	}
	return netip.Addr{}
}

func addAddrPort(b *cryptobyte.Builder, ap AddrPort) {
	b.AddASN1(asn1.SEQUENCE, func(b *cryptobyte.Builder) {
		addIP(b, 0, ap.Addr())
		AddUint(b, 1, uint64(ap.Port()))
	})
}

// ServiceLocation is where a store can be reached: literal addresses, or a
// domain to locate by DNS SRV. Exactly one of the two is set.
type ServiceLocation struct {
	Literals []AddrPort
	Domain   DomainName
}

// AddLocation adds the explicit [n] wrapper around a ServiceLocation.
func AddLocation(b *cryptobyte.Builder, n int, l ServiceLocation) {
	AddSeq(b, n, func(b *cryptobyte.Builder) {
		if l.Domain != nil {
			AddDomain(b, 1, l.Domain)
			return
		}
		AddSeq(b, 0, func(b *cryptobyte.Builder) {
			for _, ap := range l.Literals {
				addAddrPort(b, ap)
			}
		})
	})
}

// Location reads the explicit [n] wrapper around a ServiceLocation.
func (f *Fields) Location(n int) ServiceLocation {
	alt, cons, body, err := Choice(f.Seq(n))
	if f.err != nil {
		return ServiceLocation{}
	}
	if err != nil || !cons || alt > 1 {
		f.fail(malformed("[%d]: bad ServiceLocation", n))
		return ServiceLocation{}
	}
	if alt == 1 {
		d, err := parseLabels(body)
		f.fail(err)
		return ServiceLocation{Domain: d}
	}
	l := ServiceLocation{Literals: []AddrPort{}}
	f.fail(Each(body, asn1.SEQUENCE, func(s cryptobyte.String) error {
		g := ReadFields(s)
		a := g.ip(0)
		port := g.UintMax(1, 65535)
		l.Literals = append(l.Literals, netip.AddrPortFrom(a, uint16(port)))
		return g.Err()
	}))
	return l
}

// ClientLocation is who submitted a notification to an agent.
type ClientLocation struct {
	Addr   netip.Addr
	Port   uint16
	Domain DomainName // optional
}

// AddClientLocation adds [n] IMPLICIT ClientLocation.
func AddClientLocation(b *cryptobyte.Builder, n int, c ClientLocation) {
	AddSeq(b, n, func(b *cryptobyte.Builder) {
		addIP(b, 0, c.Addr)
		AddUint(b, 1, uint64(c.Port))
		if c.Domain != nil {
			AddDomain(b, 2, c.Domain)
		}
	})
}

// ClientLocation reads required [n] IMPLICIT ClientLocation.
func (f *Fields) ClientLocation(n int) ClientLocation {
	g := ReadFields(f.Seq(n))
	if f.err != nil {
		return ClientLocation{}
	}
	c := ClientLocation{Addr: g.ip(0), Port: uint16(g.UintMax(1, 65535))}
	if g.Has(2) {
		c.Domain = g.Domain(2)
	}
	f.fail(g.Err())
	return c
}

// Sub reads required constructed [n] as a nested SEQUENCE's fields.
func (f *Fields) Sub(n int) *Fields {
	g := ReadFields(f.Seq(n))
	if f.err != nil && g.err == nil {
		g.err = f.err
	}
	return g
}

// Adopt takes over the first error of a nested reader.
func (f *Fields) Adopt(g *Fields) { f.fail(g.err) }

// OctetStrings reads required [n] IMPLICIT SEQUENCE OF OCTET STRING.
func (f *Fields) OctetStrings(n int) [][]byte {
	vs := [][]byte{}
	f.fail(Each(f.Seq(n), asn1.OCTET_STRING, func(s cryptobyte.String) error {
		vs = append(vs, s)
		return nil
	}))
	return vs
}

// EachSeq calls fn with the fields of every SEQUENCE in required
// [n] IMPLICIT SEQUENCE OF SEQUENCE; fn's errors stay in its Fields.
func (f *Fields) EachSeq(n int, fn func(*Fields)) {
	f.fail(Each(f.Seq(n), asn1.SEQUENCE, func(s cryptobyte.String) error {
		g := ReadFields(s)
		fn(g)
		return g.err
	}))
}

// Authenticate is CommandAuthenticate, the same in MSOAP and RNAQP, where it
// is alternative [0]; msoap and rnaqp give it their own names.
type Authenticate struct{ Account, Password string }

func (*Authenticate) Alt() int { return 0 }
func (c *Authenticate) MarshalFields(b *cryptobyte.Builder) {
	AddBytes(b, 0, []byte(c.Account))
	AddBytes(b, 1, []byte(c.Password))
}
func (c *Authenticate) UnmarshalFields(f *Fields) {
	c.Account, c.Password = string(f.Bytes(0)), string(f.Bytes(1))
}

// AuthenticateOK is the empty ResponseAuthenticate, [1] in MSOAP and RNAQP.
type AuthenticateOK struct{}

func (AuthenticateOK) Alt() int                          { return 1 }
func (AuthenticateOK) MarshalFields(*cryptobyte.Builder) {}
func (AuthenticateOK) UnmarshalFields(*Fields)           {}

// ParseLocation reads a ServiceLocation as configuration files write it:
// "ip:port ip:port..." (literal addresses) or a domain name.
func ParseLocation(s string) (ServiceLocation, error) {
	f := strings.Fields(s)
	if len(f) == 1 && !strings.Contains(f[0], ":") {
		return ServiceLocation{Domain: strings.Split(strings.TrimSuffix(f[0], "."), ".")}, nil
	}
	var l ServiceLocation
	for _, x := range f {
		ap, err := netip.ParseAddrPort(x)
		if err != nil {
			return l, fmt.Errorf("%q: want ip:port or a domain", x)
		}
		l.Literals = append(l.Literals, ap)
	}
	if len(l.Literals) == 0 {
		return l, fmt.Errorf("empty location")
	}
	return l, nil
}

// String writes the location as ParseLocation reads it.
func (l ServiceLocation) String() string {
	if l.Domain != nil {
		return strings.Join(l.Domain, ".")
	}
	var s []string
	for _, a := range l.Literals {
		s = append(s, a.String())
	}
	return strings.Join(s, " ")
}
