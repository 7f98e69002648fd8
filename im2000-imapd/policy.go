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
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"im2000/lib/addr"
	"im2000/lib/agent"
	"im2000/lib/fail"
	"im2000/lib/inbox"
	"im2000/lib/policy"
)

// policyPath is the user's policy: senderpolicy in the user's state
// directory, else the site's senderpolicy setting.
func (c *config) policyPath(dir string) string {
	own := filepath.Join(dir, "senderpolicy")
	if _, err := os.Lstat(own); errors.Is(err, fs.ErrNotExist) {
		return c.conf.Path("senderpolicy")
	}
	return own
}

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
	path := s.policyPath(s.dir)
	pol, err := policy.Load(path)
	if err != nil {
		return nil, fail.Temp(fmt.Errorf("sender policy: %v (fix it: %s cannot read mail while it is broken)", err, s.user))
	}
	max, err := s.conf.Num("maxheld")
	if err == nil && max < 1 {
		err = fail.Temp(fmt.Errorf("maxheld is %d: want at least 1", max))
	}
	if err != nil {
		return nil, err
	}
	say := func(format string, a ...any) {
		logPolicy(ib.LogPrefix, fmt.Sprintf(format, a...))
	}
	var out, toHold []agent.Entry
	var senders []addr.Mailbox
	for _, e := range ib.Bound(fresh, ib.LogPrefix) {
		n := e.N.Notification
		sender, err := ib.Sender(e)
		if err != nil {
			out = append(out, e) // Bound kept it; retrieval checks again
			continue
		}
		switch m := pol.Decide(sender); m.Verdict {
		case policy.Fetch:
			out = append(out, e)
		case policy.Hold:
			toHold, senders = append(toHold, e), append(senders, sender)
			say("held %s from %s at %s, not retrieved (%s line %d): not in INBOX until allowed", e.Name, n.Sender, n.StoreClear, path, m.Line)
		case policy.Deny:
			ib.Done(e)
			say("dropped %s from %s at %s, not retrieved: denied by %s line %d", e.Name, n.Sender, n.StoreClear, path, m.Line)
		}
	}
	if err := ib.Hold(toHold, senders); err != nil {
		return nil, err
	}
	held, err := ib.Held(int(max)) // expired and over-maxheld ones dropped, logged
	if err != nil {
		return nil, err
	}
	var released, denied []agent.Entry
	for _, h := range held {
		e, n := h.Entry, h.N.Notification
		switch m := pol.Decide(h.Sender); m.Verdict {
		case policy.Fetch:
			if err := ib.Release(e); err != nil {
				return nil, err
			}
			say("released %s from %s at %s: allowed by %s line %d", e.Name, n.Sender, n.StoreClear, path, m.Line)
			released = append(released, e)
		case policy.Deny:
			denied = append(denied, e)
			say("dropped held %s from %s at %s, not retrieved: denied by %s line %d", e.Name, n.Sender, n.StoreClear, path, m.Line)
		}
	}
	if err := ib.DropHeld(denied); err != nil {
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
