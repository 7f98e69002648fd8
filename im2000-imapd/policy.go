package main

// The sender policy (lib/policy; DESIGN-NOTES.md, "Known and unknown
// senders"), as im2000-fetch and im2000-pop3d apply it, with one
// difference: held mail is left out of INBOX, not shown as a notice (an
// IMAP mailbox of messages fetched from stores has no place for messages
// written here; im2000-status --held and the policy's allow lines are how
// a user sees and accepts them). A held notification stays in the held box
// of the pending queue, its store never contacted, until the policy allows
// its sender: then it is released and listed like any other.

import (
	"fmt"

	"im2000/lib/agent"
	"im2000/lib/inbox"
)

// screen returns the new pending entries to list: their senders verified
// (lib/inbox.Bound drops the others, unretrieved), and allowed by the
// policy (held ones moved to the held box, denied ones dropped). The held
// entries the policy now allows are released and returned too. A broken
// policy is a temporary error: listing everything instead would be the
// read receipt the policy is written against.
func (s *imapSession) screen(fresh []agent.Entry) ([]agent.Entry, error) {
	ib, ok := s.mb.(*inbox.Inbox)
	if !ok {
		return fresh, nil // the fuzz test's mailbox
	}
	pol, path, max, err := inbox.UserPolicy(s.conf, s.dir, s.user)
	if err != nil {
		return nil, err
	}
	say := func(format string, a ...any) {
		logPolicy(ib.LogPrefix, fmt.Sprintf(format, a...))
	}
	out, err := ib.SortByPolicy(ib.Bound(fresh, ib.LogPrefix), pol, path, "not in INBOX until allowed", say)
	if err != nil {
		return nil, err
	}
	held, err := ib.Held(int(max)) // expired and over-maxheld ones dropped, logged
	if err != nil {
		return nil, err
	}
	released, _, err := ib.ReleaseByPolicy(held, pol, path, say)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, e := range out {
		seen[e.Name] = true
	}
	for _, e := range ib.Bound(released, ib.LogPrefix) {
		if !seen[e.Name] { // a re-send of it may be pending under the same name
			s.entries[e.Name] = e
			out = append(out, e)
		}
	}
	return out, nil
}
