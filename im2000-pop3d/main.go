// Command im2000-pop3d lets a POP3 mail client read IM2000 mail: on login
// it takes the user's notifications from the user's agent, shows one
// maildrop entry per message, fetches each from its sender's store when
// the client asks (RETR, TOP), and silences at the stores the messages the
// client deleted. See man/im2000-pop3d.8.
package main

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"im2000/lib/agent"
	"im2000/lib/auth"
	"im2000/lib/conf"
	"im2000/lib/fail"
	"im2000/lib/inbox"
	"im2000/lib/session"
	"im2000/lib/tlsconf"
)

const usage = `usage: im2000-pop3d [-l addr:port] [-c n] [-t seconds] [-tls]
  POP3 access to IM2000 mail for the accounts of the agent named in the rna
  file of $IM2000_CONF: one session on stdin/stdout under tcpserver, or
  with -l as a listener.
  -l addr:port  listen on addr:port instead of serving stdin/stdout
  -c n          at most n sessions at once with -l (default 40)
  -t seconds    close a session idle for this long (default 600)
  -tls          speak TLS from the first byte (port 995 style); without it,
                STLS is offered when tlscert and tlskey are set
  -h            show this help`

type config struct {
	conf    conf.Dir
	rna     string
	state   string
	timeout time.Duration
	limits  session.Limits // sessions per address, lifetime, time to log in
	// failures delays failed logins per client address (limits.go); nil:
	// not at all (the fuzz test).
	failures *auth.Limiter
	// tls is nil without a certificate (no STLS); implicit is -tls.
	// clearAuth is the setting cleartextauth (tls.go).
	tls       *tls.Config
	implicit  bool
	clearAuth bool
	// check asks the agent whether pass is user's password (nil, or an
	// error wrapping inbox.ErrAuth); open takes the user's notifications
	// and opens the maildrop. The fuzz test puts both in memory.
	check func(user, pass string) error
	open  func(dir, user, pass, peer string) (mailbox, []*entry, error)
}

// mailbox is what a session needs of the user's lib/inbox.Inbox.
type mailbox interface {
	RetrieveTo(e agent.Entry, kind uint64, w io.Writer) (int64, error)
	Silence(e agent.Entry) error
	Done(e agent.Entry)
	// SetDeadline ends the retrievals and silences still going at the
	// session's lifetime (lib/inbox.Inbox.SetDeadline).
	SetDeadline(t time.Time)
	Close()
}

func main() {
	f := session.ParseTextFlags("im2000-pop3d", usage, os.Args[1:], 600*time.Second)
	d := conf.FromEnv()
	// The certificate is loaded once: lib/tlsconf reloads the pair itself
	// (on SIGHUP, and when its files change).
	tlsCfg, err := loadTLS(d, f.TLS)
	if err != nil {
		logFatal(fail.Temp(err))
	}
	c, err := load(d, f, tlsCfg)
	if err != nil {
		logFatal(fail.Temp(err))
	}
	// Each session keeps the configuration it began with; with -l, SIGHUP
	// loads the settings again for the sessions to come, and settings that
	// do not load leave those in force.
	err = session.RunText(f, c, session.TextServer[*config]{
		Busy:     "-ERR [SYS/TEMP] too many sessions, try again later\r\n",
		BusyAddr: "-ERR [SYS/TEMP] too many sessions from your address, try again later\r\n",
		Load:     func() (*config, error) { return load(d, f, tlsCfg) },
		Limits:   func(c *config) session.Limits { return c.limits },
		Serve:    func(c *config, conn net.Conn, peer string) { c.serve(conn, peer) },
		Log:      textLog(d),
	})
	if err != nil {
		logFatal(fail.Temp(err))
	}
}

// load reads every setting pop3d uses (at start, and on SIGHUP with -l);
// tlsCfg is the certificate loaded once (loadTLS).
func load(d conf.Dir, f session.Flags, tlsCfg *tls.Config) (*config, error) {
	c := &config{conf: d, timeout: f.Timeout, tls: tlsCfg, implicit: f.TLS}
	c.check, c.open = c.checkPassword, c.openInbox
	s, err := inbox.LoadServer(d, "pop3state", "the users' pending messages", "pop3")
	c.rna, c.state, c.limits, c.failures = s.RNA, s.State, s.Limits, s.Failures
	if err == nil {
		c.clearAuth, err = tlsconf.ClearAuth(d)
	}
	if err != nil {
		return nil, err
	}
	return c, nil
}

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
