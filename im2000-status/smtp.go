package main

import (
	"im2000/lib/conf"
	"im2000/lib/store"
)

// viaSMTP fills in, for each recipient im2000-notifyd handed to SMTP, the
// relay it went to. The status record keeps only the state smtp, not the
// host, so the host is the smarthost setting in force now (see
// im2000-status(1)); an unreadable or empty setting leaves it unknown.
func viaSMTP(c conf.Dir, v *messageView) {
	smtp := store.SMTP.String()
	var host string
	looked := false
	for i := range v.Recipients {
		r := &v.Recipients[i]
		if r.Notification != smtp {
			continue
		}
		if !looked {
			host, _ = c.Str("smarthost")
			looked = true
		}
		r.Via = host
	}
}

// notification is the NOTIFICATION column: the state, or for a hand-off
// to SMTP where it went.
func (r recipientView) notification() string {
	if r.Notification != store.SMTP.String() {
		return r.Notification
	}
	if r.Via == "" {
		return "handed to SMTP"
	}
	return "handed to SMTP via " + r.Via
}
