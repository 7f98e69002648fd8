package inbox

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"im2000/lib/addr"
	"im2000/lib/agent"
	"im2000/lib/conf"
	"im2000/lib/fail"
	"im2000/lib/policy"
)

// UserPolicy reads the sender policy of the user whose state directory is
// dir, for im2000-imapd and im2000-pop3d: senderpolicy in dir, else the
// site's senderpolicy setting; path is the file it came from, max the
// setting maxheld. A broken policy is a temporary error: reading
// everything instead would be the read receipt the policy is written
// against.
func UserPolicy(d conf.Dir, dir, user string) (pol *policy.Policy, path string, max int64, err error) {
	path = filepath.Join(dir, "senderpolicy")
	if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
		path = d.Path("senderpolicy")
	}
	if pol, err = policy.Load(path); err != nil {
		return nil, path, 0, fail.Temp(fmt.Errorf("sender policy: %v (fix it: %s cannot read mail while it is broken)", err, user))
	}
	max, err = d.Num("maxheld")
	if err == nil && max < 1 {
		err = fail.Temp(fmt.Errorf("maxheld is %d: want at least 1", max))
	}
	return pol, path, max, err
}

// SortByPolicy is the one pass of the per-user sender policy (pol, read
// from path) over fresh notifications, for im2000-imapd and im2000-pop3d:
// it returns those to fetch, holds those it says to hold (Hold) and drops
// those it denies (Done), each logged through say; heldWhere ends the
// "held" line, telling where the user will see it. One whose sender cannot
// be read is fetched: retrieval checks it again.
func (b *Inbox) SortByPolicy(entries []agent.Entry, pol *policy.Policy, path, heldWhere string, say func(format string, a ...any)) ([]agent.Entry, error) {
	var out, toHold []agent.Entry
	var senders []addr.Mailbox
	for _, e := range entries {
		n := e.N.Notification
		sender, err := b.Sender(e)
		if err != nil {
			out = append(out, e) // Bound kept it; retrieval checks again
			continue
		}
		switch m := pol.Decide(sender); m.Verdict {
		case policy.Fetch:
			out = append(out, e)
		case policy.Hold:
			toHold, senders = append(toHold, e), append(senders, sender)
			say("held %s from %s at %s, not retrieved (%s line %d): %s", e.Name, n.Sender, n.StoreClear, path, m.Line, heldWhere)
		case policy.Deny:
			b.Done(e)
			say("dropped %s from %s at %s, not retrieved: denied by %s line %d", e.Name, n.Sender, n.StoreClear, path, m.Line)
		}
	}
	if err := b.Hold(toHold, senders); err != nil {
		return nil, err
	}
	return out, nil
}

// ReleaseByPolicy is the policy's pass over the held box (held, from
// Held), for im2000-imapd and im2000-pop3d: it releases those the policy
// now allows (Release) and returns them, drops those it denies (DropHeld),
// each logged through say, and returns the rest as still held. Those
// released are to go through Bound again.
func (b *Inbox) ReleaseByPolicy(held []HeldEntry, pol *policy.Policy, path string, say func(format string, a ...any)) (released []agent.Entry, still []HeldEntry, err error) {
	var denied []agent.Entry
	for _, h := range held {
		e, n := h.Entry, h.N.Notification
		switch m := pol.Decide(h.Sender); m.Verdict {
		case policy.Fetch:
			if err := b.Release(e); err != nil {
				return nil, nil, err
			}
			say("released %s from %s at %s: allowed by %s line %d", e.Name, n.Sender, n.StoreClear, path, m.Line)
			released = append(released, e)
		case policy.Deny:
			denied = append(denied, e)
			say("dropped held %s from %s at %s, not retrieved: denied by %s line %d", e.Name, n.Sender, n.StoreClear, path, m.Line)
		default:
			still = append(still, h)
		}
	}
	if err := b.DropHeld(denied); err != nil {
		return nil, nil, err
	}
	return released, still, nil
}
