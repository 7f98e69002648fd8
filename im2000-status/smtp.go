package main

import (
	"im2000/lib/store"
	"im2000/lib/trace"
)

// viaSMTP fills in, for each recipient im2000-notifyd handed to SMTP, the
// relay that took it and the relay's reply (which normally names its
// queue identifier), from the hand-off record notifyd wrote at the time
// (store.HandOff): never the smarthost setting in force now, which may
// have changed since. A hand-off from before the records were kept has
// none: the status then says only "handed to SMTP". A remote store's
// MSOAP Track has no such field (it says silenced for a hand-off), so a
// remote status shows the state Track gives, and this is for local stores
// only.
func viaSMTP(a *store.Account, env *store.Envelope, st *store.Status, v *messageView) {
	var hs []store.HandOff
	looked := false
	for i := range v.Recipients {
		if i >= len(st.Recipients) || i >= len(env.Recipients) || st.Recipients[i].Notification != store.SMTP {
			continue
		}
		if !looked {
			hs, _ = a.HandOffs(env.ID) // unreadable: shown as without a record
			looked = true
		}
		if h, ok := store.HandOffOf(hs, env.Recipients[i].Addr.Domain, st.Recipients[i].Last); ok {
			// Escaped here, once, for the table and --json alike: the
			// reply is the relay's, and a hostile relay's C1 controls
			// (U+009B, a CSI to a terminal) or bidi overrides would reach
			// whatever prints the JSON raw (third review of issue 20).
			v.Recipients[i].Via, v.Recipients[i].ViaReply = trace.Escape(h.Relay), trace.Escape(h.Reply)
		}
	}
}

// notification is the NOTIFICATION column: the state, or for a hand-off
// to SMTP where it went and what the relay said.
func (r recipientView) notification() string {
	if r.Notification != store.SMTP.String() {
		return r.Notification
	}
	if r.Via == "" {
		return "handed to SMTP"
	}
	return "handed to SMTP via " + r.Via + " (" + r.ViaReply + ")" // escaped by viaSMTP
}
