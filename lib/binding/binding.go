// Package binding decides whether a notification's sender is verified
// (DESIGN.md section 3, "Sender binding"), for every program that reads
// mail: im2000-fetch and im2000-pop3d through lib/inbox, and any later
// reading shim.
//
// A notification's sender is a claim. It is verified only when the store
// location the notification names is one the sender's domain publishes:
// the location is that domain itself, or each of its literal addresses is
// one that the domain's _msrap._tcp or _msraps._tcp service leads to
// (routes file first, then DNS). A list notification (from the reader's
// own im2000-listd: sender LIST@DOMAIN, where LIST is a list in the
// reader's list file and DOMAIN that list's store domain, or lists.invalid
// when the store is given by addresses) is bound instead to the location
// the list file names for that list. A sender that is not a valid mailbox
// is never verified.
//
// The check contacts no store: only the routes file and DNS.
package binding

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"im2000/lib/addr"
	"im2000/lib/conf"
	"im2000/lib/locate"
	"im2000/lib/store"
	"im2000/lib/wire"
	"im2000/lib/wire/rnasp"
)

// ErrUnverified is a sender the notification's store location does not
// bind: the notification must not be retrieved.
var ErrUnverified = errors.New("sender not verified")

// ListDomain is the domain of a list notification's sender when the list's
// store is given by addresses.
const ListDomain = "lists.invalid"

// maxSender bounds a sender's length (RFC 5321's path limits, 64 + 1 + 253,
// rounded as DESIGN.md's 320 octets).
const maxSender = 320

// list is one line of the reader's list file.
type list struct {
	name  string
	where wire.ServiceLocation
}

// Checker checks notifications. It remembers what each domain's services
// lead to for its own life (one run of fetch, one POP3 session), so that
// many notifications claiming one domain cost one lookup.
type Checker struct {
	loc   *locate.Locator
	lists []list
	addrs map[string]lookup
}

type lookup struct {
	addrs map[netip.AddrPort]bool
	err   error
}

// New makes a Checker that locates with loc and knows the lists of the
// list file (the listfile setting of d, as im2000-listd(8) reads it: "name
// store [backfill]" per line; lines it cannot read are ignored, as listd
// ignores them).
func New(loc *locate.Locator, d conf.Dir) (*Checker, error) {
	c := &Checker{loc: loc, addrs: map[string]lookup{}}
	lines, err := d.Lines("listfile")
	if err != nil {
		return nil, err
	}
	for _, line := range lines {
		f := strings.Fields(line)
		if len(f) < 2 || len(f) > 3 || store.CheckListName(strings.ToLower(f[0])) != nil {
			continue
		}
		where, err := wire.ParseLocation(f[1])
		if err != nil {
			continue
		}
		c.lists = append(c.lists, list{name: strings.ToLower(f[0]), where: where})
	}
	return c, nil
}

// Check returns the notification's sender if it is verified, and else an
// error wrapping ErrUnverified that says why.
func (c *Checker) Check(ctx context.Context, n *rnasp.Notification) (addr.Mailbox, error) {
	locs := []wire.ServiceLocation{n.StoreClear}
	if n.StoreSSL != nil {
		locs = append(locs, *n.StoreSSL)
	}
	if len(n.Sender) > maxSender {
		return addr.Mailbox{}, fmt.Errorf("%w: the sender is %d octets long, not a mailbox", ErrUnverified, len(n.Sender))
	}
	sender, err := addr.Parse(n.Sender)
	if err != nil && !strings.Contains(n.Sender, "@") {
		// The bare list name that listd wrote before list notifications
		// had a mailbox for a sender: bound to the list file all the same.
		for _, l := range c.lists {
			if n.Sender == l.name {
				sender, err = addr.Mailbox{Local: l.name, Domain: ListDomain}, nil
				if l.where.Domain != nil {
					sender.Domain = domainOf(l.where)
				}
				break
			}
		}
	}
	if err != nil {
		return addr.Mailbox{}, fmt.Errorf("%w: the sender is not a valid mailbox (%v)", ErrUnverified, err)
	}
	if l, ok := c.list(sender); ok {
		for _, loc := range locs {
			if !sameLocation(loc, l.where) {
				return addr.Mailbox{}, fmt.Errorf("%w: the list file follows list %s at %s, not at %s", ErrUnverified, l.name, l.where, loc)
			}
		}
		return sender, nil
	}
	if sender.Domain == ListDomain {
		return addr.Mailbox{}, fmt.Errorf("%w: no list %s in the list file", ErrUnverified, sender.Local)
	}
	for _, loc := range locs {
		if err := c.bound(ctx, sender.Domain, loc); err != nil {
			return addr.Mailbox{}, fmt.Errorf("%w: %v", ErrUnverified, err)
		}
	}
	return sender, nil
}

// list finds the list a list notification's sender names: a list of the
// list file whose store domain (or lists.invalid) is the sender's domain.
func (c *Checker) list(sender addr.Mailbox) (list, bool) {
	for _, l := range c.lists {
		if !strings.EqualFold(sender.Local, l.name) {
			continue
		}
		if sender.Domain == ListDomain && l.where.Domain == nil || l.where.Domain != nil && sender.Domain == domainOf(l.where) {
			return l, true
		}
	}
	return list{}, false
}

// bound tells whether loc is a store location domain publishes.
func (c *Checker) bound(ctx context.Context, domain string, loc wire.ServiceLocation) error {
	if loc.Domain != nil {
		if domainOf(loc) == domain {
			return nil
		}
		return fmt.Errorf("the store %s is not the sender's domain %s", loc, domain)
	}
	if len(loc.Literals) == 0 {
		return errors.New("the notification names no store")
	}
	var errs []string
	for _, service := range []string{"msrap", "msraps"} {
		name := locate.SRVName(service, domain)
		got := c.lookup(ctx, service, domain)
		if got.err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", name, got.err))
			continue
		}
		all := true
		for _, a := range loc.Literals {
			all = all && got.addrs[netip.AddrPortFrom(a.Addr().Unmap(), a.Port())]
		}
		if all {
			return nil
		}
		errs = append(errs, fmt.Sprintf("%s does not lead to %s", name, loc))
	}
	return errors.New(strings.Join(errs, "; "))
}

func (c *Checker) lookup(ctx context.Context, service, domain string) lookup {
	key := service + " " + domain
	if got, ok := c.addrs[key]; ok {
		return got
	}
	var got lookup
	addrs, err := c.loc.Addrs(ctx, service, domain)
	if err != nil {
		got.err = err
	} else {
		got.addrs = map[netip.AddrPort]bool{}
		for _, a := range addrs {
			got.addrs[a] = true
		}
	}
	c.addrs[key] = got
	return got
}

// domainOf is a domain-form location as a lowercase domain.
func domainOf(l wire.ServiceLocation) string {
	return strings.ToLower(strings.TrimSuffix(strings.Join(l.Domain, "."), "."))
}

// sameLocation tells whether two locations are the same store: the same
// domain (in any case), or the same addresses in the same order.
func sameLocation(a, b wire.ServiceLocation) bool {
	if (a.Domain != nil) != (b.Domain != nil) {
		return false
	}
	if a.Domain != nil {
		return domainOf(a) == domainOf(b)
	}
	if len(a.Literals) != len(b.Literals) {
		return false
	}
	for i := range a.Literals {
		if a.Literals[i].Addr().Unmap() != b.Literals[i].Addr().Unmap() || a.Literals[i].Port() != b.Literals[i].Port() {
			return false
		}
	}
	return true
}
