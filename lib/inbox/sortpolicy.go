package inbox

import (
	"im2000/lib/addr"
	"im2000/lib/agent"
	"im2000/lib/policy"
)

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
