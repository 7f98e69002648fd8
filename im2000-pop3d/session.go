package main

import (
	"bufio"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"im2000/lib/agent"
	"im2000/lib/inbox"
	"im2000/lib/session"
)

// A POP3 session: the greeting, the AUTHORIZATION state (USER/PASS,
// AUTH PLAIN, STLS) and the opening of the user's maildrop.

// entry is one message of the maildrop.
type entry struct {
	e       agent.Entry
	size    uint64
	deleted bool
	gone    bool // refused, expired or gone from its store: deleted for good, not silenced
}

type pop struct {
	*config
	conn    session.Conn
	r       *bufio.Reader
	peer    string
	account string
	inbox   mailbox
	lock    *os.File
	drop    []*entry
	start   time.Time // of the session, for its lifetime
	overTLS bool      // the session is in TLS (-tls, or after STLS)
	// localUser: on pipes, with no peer named (session.LocalUser); a
	// Unix-domain socket is not a local user's.
	localUser bool
}

// serve runs one POP3 session. A panic ends the session with an -ERR and
// an alert in the log, never the server and its other sessions.
func (c *config) serve(conn session.Conn, peer string) {
	p := &pop{config: c, conn: conn, r: bufio.NewReaderSize(conn, 4096), peer: peer, start: time.Now(), localUser: session.LocalUser(conn)}
	defer func() {
		if v := recover(); v != nil {
			logPanic(peer, v)
			p.reply("-ERR [SYS/TEMP] internal error, try again later")
		}
		p.close()
	}()
	if c.implicit && !p.startTLS() {
		return
	}
	p.reply("+OK im2000-pop3d ready")
	var user string
	for {
		line, err := p.readLine()
		if err != nil {
			return
		}
		verb, arg, _ := strings.Cut(line, " ")
		verb = strings.ToUpper(verb)
		if p.account == "" { // AUTHORIZATION
			switch verb {
			case "CAPA":
				p.reply(p.capa())
			case "STLS":
				if !p.stls() {
					return
				}
				user = ""
			case "USER":
				if p.passwordOK(verb) {
					user = arg
					p.reply("+OK send PASS")
				}
			case "PASS":
				if p.passwordOK(verb) {
					p.login(user, arg)
				}
			case "AUTH":
				if p.passwordOK(verb) && !p.authPlain(arg) {
					return
				}
			case "QUIT":
				p.reply("+OK bye")
				return
			default:
				p.reply("-ERR authenticate first (USER and PASS, or AUTH PLAIN)")
			}
			continue
		}
		if !p.transaction(verb, arg) {
			return
		}
	}
}

// readLine reads one command line of at most 512 octets (RFC 2449),
// within the idle timeout, cut short by the session's lifetime and, before
// login, by the time it has for that (lib/session.Limits).
func (p *pop) readLine() (string, error) {
	deadline, why := p.limits.Deadline(p.start, p.timeout, p.account != "")
	p.conn.SetReadDeadline(deadline)
	line, err := p.r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) || len(line) > 512 {
		p.reply("-ERR line too long")
		return "", errors.New("line too long")
	}
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) && why != "" {
			logLimit(p.peer, why)
			p.reply("-ERR [SYS/TEMP] autologout: " + why)
		} else if errors.Is(err, os.ErrDeadlineExceeded) {
			p.reply("-ERR autologout: idle too long")
		}
		return "", err
	}
	return strings.TrimRight(string(line), "\r\n"), nil
}

func (p *pop) reply(s string) {
	p.conn.SetWriteDeadline(p.writeDeadline())
	io.WriteString(p.conn, s+"\r\n")
}

// authPlain runs AUTH PLAIN; false ends the session.
func (p *pop) authPlain(arg string) bool {
	mech, initial, _ := strings.Cut(arg, " ")
	if !strings.EqualFold(mech, "PLAIN") {
		p.reply("-ERR only AUTH PLAIN")
		return true
	}
	if initial == "" {
		p.reply("+ ")
		line, err := p.readLine()
		if err != nil {
			return false
		}
		initial = line
	}
	raw, err := base64.StdEncoding.DecodeString(initial)
	parts := strings.Split(string(raw), "\x00")
	if err != nil || len(parts) != 3 || (parts[0] != "" && parts[0] != parts[1]) {
		p.reply("-ERR [AUTH] malformed AUTH PLAIN")
		return true
	}
	p.login(parts[1], parts[2])
	return true
}

// login checks the password at the agent (RNAQP), and only then locks
// the maildrop, creates the user's state and takes the notifications: a
// wrong password must neither hold the lock (a loop of them would keep the
// user out) nor leave a directory behind.
func (p *pop) login(user, pass string) {
	if err := p.checkLogin(user, pass); err != nil {
		p.loginFailed(user, err)
		return
	}
	dir := filepath.Join(p.state, user)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		p.tempError(err)
		return
	}
	lock, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		p.tempError(err)
		return
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		lock.Close()
		p.reply("-ERR [IN-USE] another session has this maildrop")
		return
	}
	// The agent checks the password again as the notifications are taken:
	// it may have changed in between.
	mb, drop, err := p.open(dir, user, pass, p.peer)
	if err != nil {
		lock.Close()
		p.loginFailed(user, err)
		return
	}
	p.account, p.inbox, p.lock, p.drop = user, mb, lock, drop
	logLoggedIn(p.peer, user, len(p.drop))
	p.reply(fmt.Sprintf("+OK %s has %d messages", user, len(p.drop)))
}

func (p *pop) loginFailed(user string, err error) {
	if p.throttled(err) {
		return
	}
	if errors.Is(err, inbox.ErrAuth) {
		logLoginFailed(p.peer, user)
		p.reply("-ERR [AUTH] invalid login")
		return
	}
	p.tempError(err)
}

// checkPassword asks the agent whether pass is user's password
// (lib/inbox.CheckPassword).
func (c *config) checkPassword(user, pass string) error {
	return inbox.CheckPassword(c.conf, c.rna, user, pass)
}

// openInbox takes the user's notifications from the agent into the
// pending queue in dir and lists the maildrop, dropping the messages their
// stores no longer have, and before that, without contacting their
// stores, those whose senders are not verified (lib/binding).
func (c *config) openInbox(dir, user, pass, peer string) (mailbox, []*entry, error) {
	ib, err := inbox.Open(c.conf, dir)
	if err != nil {
		return nil, nil, err
	}
	if _, err := ib.Take(c.rna, user, pass); err != nil {
		ib.Close()
		return nil, nil, err
	}
	entries, err := ib.Pending()
	if err != nil {
		ib.Close()
		return nil, nil, err
	}
	ib.LogPrefix = peer + ": " + user + ": "
	entries = ib.Bound(entries, ib.LogPrefix)
	// The sender policy holds or drops some, before any store is
	// contacted; the held ones show as notices (policy.go).
	entries, notices, err := c.screen(ib, dir, user, entries)
	if err != nil {
		ib.Close()
		return nil, nil, err
	}
	// The stores are asked for the sizes notifications lack at once, one
	// session per store (lib/inbox.PerStore), each store with one chance:
	// a login costs at most about one timeout, whatever the stores do.
	slots := make([]*entry, len(entries))
	inbox.PerStore(entries, func(i int, e agent.Entry) {
		size, err := ib.Size(e)
		switch {
		case errors.Is(err, inbox.ErrGone):
			ib.Done(e)
		case errors.Is(err, inbox.ErrDropped): // logged by lib/inbox
		case err != nil:
			logNoSize(peer, user, e.N.Notification.ID.String(), err)
		default:
			slots[i] = &entry{e: e, size: size}
		}
	})
	var drop []*entry
	for _, d := range slots {
		if d != nil {
			drop = append(drop, d)
		}
	}
	return notices.wrap(ib, drop)
}

func (p *pop) tempError(err error) {
	logUnreachable(p.peer, err)
	p.reply("-ERR [SYS/TEMP] cannot reach your mail right now, try again later")
}

// message finds a numbered message that is not deleted.
func (p *pop) message(arg string) (*entry, int, bool) {
	n, err := strconv.Atoi(strings.TrimSpace(arg))
	if err != nil || n < 1 || n > len(p.drop) || p.drop[n-1].deleted {
		p.reply("-ERR no such message")
		return nil, 0, false
	}
	return p.drop[n-1], n, true
}
