package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"im2000/lib/agent"
	"im2000/lib/inbox"
)

// The TRANSACTION and UPDATE states (RFC 1939): the commands on an open
// maildrop, and the silences of what the client deleted.

// transaction runs one command of the TRANSACTION state; false ends the session.
func (p *pop) transaction(verb, arg string) bool {
	switch verb {
	case "STAT":
		n, size := 0, uint64(0)
		for _, e := range p.drop {
			if !e.deleted {
				n, size = n+1, size+e.size
			}
		}
		p.reply(fmt.Sprintf("+OK %d %d", n, size))
	case "LIST", "UIDL":
		show := func(i int, e *entry) string {
			if verb == "LIST" {
				return fmt.Sprintf("%d %d", i+1, e.size)
			}
			return fmt.Sprintf("%d %s", i+1, agent.Key(&e.e.N))
		}
		if arg != "" {
			if e, n, ok := p.message(arg); ok {
				p.reply("+OK " + show(n-1, e))
			}
			return true
		}
		var b strings.Builder
		b.WriteString("+OK\r\n")
		for i, e := range p.drop {
			if !e.deleted {
				b.WriteString(show(i, e) + "\r\n")
			}
		}
		b.WriteString(".")
		p.reply(b.String())
	case "RETR":
		if e, _, ok := p.message(arg); ok {
			p.retr(e)
		}
	case "TOP":
		num, lines, _ := strings.Cut(arg, " ")
		k, err := strconv.Atoi(strings.TrimSpace(lines))
		if err != nil || k < 0 {
			p.reply("-ERR usage: TOP msg lines")
			return true
		}
		if e, _, ok := p.message(num); ok {
			p.top(e, k)
		}
	case "DELE":
		if e, n, ok := p.message(arg); ok {
			e.deleted = true
			p.reply(fmt.Sprintf("+OK message %d deleted", n))
		}
	case "RSET":
		for _, e := range p.drop {
			e.deleted = e.gone
		}
		p.reply("+OK")
	case "NOOP":
		p.reply("+OK")
	case "CAPA":
		p.reply("+OK capabilities follow\r\nUSER\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nIMPLEMENTATION im2000-pop3d\r\n.")
	case "QUIT":
		p.update()
		return false
	default:
		p.reply("-ERR unknown command")
	}
	return true
}

// update silences at their stores the messages the client deleted; what
// cannot be silenced now stays in the maildrop for a later session.
func (p *pop) update() {
	done := 0
	p.bound()
	for _, e := range p.drop {
		if !e.deleted || e.gone {
			continue
		}
		if err := p.inbox.Silence(e.e); err != nil {
			if !errors.Is(err, inbox.ErrDropped) { // else lib/inbox logged why it is gone
				logNotSilenced(p.peer, p.account, e.e.N.Notification.ID.String(), err)
			}
			continue
		}
		p.inbox.Done(e.e)
		done++
	}
	logQuit(p.peer, p.account, done)
	p.reply(fmt.Sprintf("+OK %d messages silenced at their stores", done))
}

func (p *pop) close() {
	if p.inbox != nil {
		p.inbox.Close()
	}
	if p.lock != nil {
		p.lock.Close()
	}
	p.conn.Close()
}
