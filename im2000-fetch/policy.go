package main

// The sender policy (lib/policy, the senderpolicy setting): which verified
// senders' messages are fetched, held until the user accepts them, or
// dropped, and --summary, which lists what waits from the notifications
// alone. Nothing here contacts a store: that is the point of holding.

import (
	"encoding/hex"
	"fmt"
	"sort"
	"strings"
	"time"

	"im2000/lib/addr"
	"im2000/lib/agent"
	"im2000/lib/fail"
	"im2000/lib/policy"
	"im2000/lib/trace"
)

func (f *fetcher) policyPath() string { return f.conf.Path("senderpolicy") }

// loadPolicy reads the sender policy. A broken one stops the run (exit
// 111): fetching everything instead would be the very read receipt the
// user wrote the policy against.
func (f *fetcher) loadPolicy() (*policy.Policy, error) {
	p, err := policy.Load(f.policyPath())
	if err != nil {
		return nil, fail.Temp(fmt.Errorf("sender policy: %v (fix it: nothing is fetched while it is broken)", err))
	}
	return p, nil
}

// maxHeld is the maxheld setting: the most notifications kept held; the
// oldest beyond it are dropped (lib/inbox.Held).
func (f *fetcher) maxHeld() (int, error) {
	n, err := f.conf.Num("maxheld")
	if err == nil && n < 1 {
		err = fail.Perm(fmt.Errorf("maxheld is %d: want at least 1 (%s)", n, f.conf.Path("maxheld")))
	}
	return int(n), err
}

// isKey reports whether s has the form of a notification's key (what
// --summary prints last and --accept takes), in either case.
func isKey(s string) bool {
	b, err := hex.DecodeString(s)
	return err == nil && len(b) == 16
}

// acceptKey is --accept's key in the form of the entries' names (lower
// case), or "" when --accept names an address or none.
func (f *fetcher) acceptKey() string {
	if isKey(f.accept) {
		return strings.ToLower(f.accept)
	}
	return ""
}

// acceptAddress handles --accept ADDRESS (or @DOMAIN): a line "allow
// ADDRESS" is added to the policy file, so that this run releases what is
// held from that sender and later mail is fetched as it comes.
func (f *fetcher) acceptAddress() error {
	if f.accept == "" || isKey(f.accept) {
		return nil
	}
	if !strings.Contains(f.accept, "@") {
		return fail.Perm(fmt.Errorf("--accept %s: want a key from --summary's last column, an address or @domain", trace.Escape(f.accept)))
	}
	if err := policy.Allow(f.policyPath(), f.accept); err != nil {
		return fail.Perm(fmt.Errorf("--accept: %v", err))
	}
	logAccepted(f.accept, f.policyPath())
	return nil
}

// screen applies the sender policy to the verified pending entries (after
// Bound) and to those held before, and returns what to retrieve now: the
// allowed ones, the ones the user accepted, and the held ones the policy
// now allows. Newly held ones go to the held box with their verified
// senders, denied ones are dropped; one log line each, and no store
// contacted for either. Held entries are decided on their stored senders:
// no DNS per held entry per run; the binding is checked again (Bound) only
// for those released.
func (f *fetcher) screen(entries []agent.Entry) ([]agent.Entry, error) {
	if err := f.acceptAddress(); err != nil {
		return nil, err
	}
	pol, err := f.loadPolicy()
	if err != nil {
		return nil, err
	}
	max, err := f.maxHeld()
	if err != nil {
		return nil, err
	}
	key := f.acceptKey()
	acceptedKey := false
	var out, toHold []agent.Entry
	var senders []addr.Mailbox
	for _, e := range entries {
		n := e.N.Notification
		if key == e.Name && !acceptedKey {
			if err := f.inbox.Mark("accepted", e); err != nil {
				return nil, err
			}
			acceptedKey = true
		}
		sender, err := f.inbox.Sender(e)
		if err != nil || f.inbox.Accepted(e) {
			out = append(out, e) // Bound kept it: verified; retrieval checks again
			continue
		}
		switch m := pol.Decide(sender); m.Verdict {
		case policy.Fetch:
			out = append(out, e)
		case policy.Hold:
			toHold, senders = append(toHold, e), append(senders, sender)
			// only a default line holds: m.Line is its line
			logPolicy(fmt.Sprintf("held %s from %s at %s, not retrieved (%s line %d): im2000-fetch --accept %s fetches it", e.Name, n.Sender, n.StoreClear, pol.Name, m.Line, e.Name))
		case policy.Deny:
			f.inbox.Done(e)
			logPolicy(fmt.Sprintf("dropped %s from %s at %s, not retrieved: denied by %s line %d", e.Name, n.Sender, n.StoreClear, pol.Name, m.Line))
		}
	}
	if err := f.inbox.Hold(toHold, senders); err != nil {
		return nil, err
	}
	// The held box, those just held included: expired, unreadable and
	// over-maxheld entries go first (logged by lib/inbox).
	held, err := f.inbox.Held(max)
	if err != nil {
		return nil, err
	}
	keep := map[string]bool{}
	var released, denied []agent.Entry
	for _, h := range held {
		e, n := h.Entry, h.N.Notification
		if key == e.Name {
			if err := f.inbox.Accept(e); err != nil {
				return nil, err
			}
			acceptedKey = true
			logPolicy(fmt.Sprintf("accepted %s from %s at %s", e.Name, n.Sender, n.StoreClear))
			released = append(released, e)
			continue
		}
		if f.inbox.Accepted(e) {
			// Accepted, then a crash before its release: released now.
			if err := f.inbox.Release(e); err != nil {
				return nil, err
			}
			logPolicy(fmt.Sprintf("released %s from %s at %s: accepted before", e.Name, n.Sender, n.StoreClear))
			released = append(released, e)
			continue
		}
		switch m := pol.Decide(h.Sender); m.Verdict {
		case policy.Fetch:
			if err := f.inbox.Release(e); err != nil {
				return nil, err
			}
			logPolicy(fmt.Sprintf("released %s from %s at %s: allowed by %s line %d", e.Name, n.Sender, n.StoreClear, pol.Name, m.Line))
			released = append(released, e)
		case policy.Deny:
			denied = append(denied, e)
			logPolicy(fmt.Sprintf("dropped held %s from %s at %s, not retrieved: denied by %s line %d", e.Name, n.Sender, n.StoreClear, pol.Name, m.Line))
		default:
			keep[e.Name] = true
		}
	}
	if err := f.inbox.DropHeld(denied); err != nil {
		return nil, err
	}
	if key != "" && !acceptedKey {
		return nil, fail.Perm(fmt.Errorf("--accept %s: no such notification held or pending (im2000-fetch --summary lists them)", f.accept))
	}
	// A held entry released here and a re-send of it in the pending
	// queue have the same name: one retrieval. Released entries are
	// checked against DNS and routes again now (Bound).
	seen := map[string]bool{}
	all := out
	out = nil
	for _, e := range append(all, f.inbox.Bound(released, "")...) {
		if !seen[e.Name] {
			seen[e.Name] = true
			out = append(out, e)
		}
	}
	for _, e := range out {
		keep[e.Name] = true
	}
	f.inbox.PruneMarks("accepted", keep)
	return out, nil
}

// summarize prints one line per notification, held and pending, from the
// notifications alone (pending ones' binding is checked with DNS and
// routes, never a store; held ones were checked when held), oldest first,
// tab-separated: date, sender, size ("?" when the notification does not
// say), store location, verified or unverified, what the next run does
// with it (pending: fetched; held: kept, waiting for --accept; denied:
// dropped by the policy; dropped: dropped unverified, expired or over
// maxheld), and the key --accept takes. The sender and the location are
// the notification's words: escaped.
func (f *fetcher) summarize(pending []agent.Entry, takeErr error) error {
	pol, err := f.loadPolicy()
	if err != nil {
		return err
	}
	max, err := f.maxHeld()
	if err != nil {
		return err
	}
	held, drops, err := f.inbox.ScanHeld(max)
	if err != nil {
		return fail.Temp(err)
	}
	type line struct {
		e               agent.Entry
		verified, state string
	}
	var lines []line
	state := func(e agent.Entry, s addr.Mailbox) string {
		if f.inbox.Accepted(e) {
			return "pending"
		}
		switch pol.Decide(s).Verdict {
		case policy.Hold:
			return "held"
		case policy.Deny:
			return "denied"
		}
		return "pending"
	}
	isHeld := map[string]bool{}
	for _, h := range held {
		isHeld[h.Name] = true
		lines = append(lines, line{h.Entry, "verified", state(h.Entry, h.Sender)})
	}
	for _, d := range drops {
		isHeld[d.Name] = true
		l := line{d.Entry, "verified", "dropped"}
		if strings.HasPrefix(d.Why, "no verified sender") {
			l.verified = "unverified"
		}
		lines = append(lines, l)
	}
	for _, e := range pending {
		if isHeld[e.Name] {
			continue // a re-send of a held one, held again on the next run
		}
		s, err := f.inbox.Sender(e)
		if err != nil {
			lines = append(lines, line{e, "unverified", "dropped"}) // Bound drops it
			continue
		}
		lines = append(lines, line{e, "verified", state(e, s)})
	}
	sort.SliceStable(lines, func(i, j int) bool { return lines[i].e.N.Date < lines[j].e.N.Date })
	for _, l := range lines {
		n := l.e.N.Notification
		size := "?"
		if n.Size != nil {
			size = fmt.Sprint(*n.Size)
		}
		fmt.Printf("%s\t%s\t%s\t%s\t%s\t%s\t%s\n", time.Unix(int64(l.e.N.Date), 0).UTC().Format(time.RFC3339),
			trace.Escape(n.Sender), size, trace.Escape(n.StoreClear.String()), l.verified, l.state, agent.Key(&l.e.N))
	}
	return takeErr
}
