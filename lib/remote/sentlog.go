package remote

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"im2000/lib/conf"
	"im2000/lib/durable"
	"im2000/lib/fail"
	"im2000/lib/msgid"
	"im2000/lib/store"
)

// The sent log: MSOAP has no command to list an archive, so what was
// submitted remotely (by im2000-inject, or by im2000-smtpd for the account
// that authenticated) is appended to a local file, one line a message,
// and im2000-status lists the lines of its own account, asking Track for
// each. A line is
//
//	ID TAB UNIXTIME+LIFETIME TAB ACCOUNT TAB SUBJECT LF
//
// LIFETIME is the seconds the submitter asked the store to keep the
// message (MSOAP Track does not tell the expiry, and the store may have
// cut it to its maxlifetime). It rides in the time field because a reader
// of the form before it (UNIXTIME alone, digits only) then refuses the
// line as one it did not write, whereas a field of its own would be read
// by such a reader as the account (digits are an account name). That form
// is still read, with the lifetime unknown. The oldest form, "ID UNIXTIME
// SUBJECT" with single spaces, never held a tab (Record made every control
// character of the subject a space), so a tab tells the forms apart; a
// line of the oldest form names no account and is the log owner's own.

// Sent is one line of the sent log.
type Sent struct {
	ID        msgid.ID
	Submitted time.Time
	Account   string        // who submitted it; "" on a line of the oldest form
	Lifetime  time.Duration // asked of the store, whole seconds; 0: unknown (an older line)
	Subject   string
}

// Expires is when the message's asked lifetime ends, zero when unknown:
// what was asked, for the store may have kept it for less.
func (s Sent) Expires() time.Time {
	if s.Lifetime <= 0 {
		return time.Time{}
	}
	return s.Submitted.Add(s.Lifetime)
}

// Mine reports whether the line is account's: one that names it, or one
// of the old form, which names nobody and was its owner's.
func (s Sent) Mine(account string) bool { return s.Account == "" || s.Account == account }

// AccountPlaceholder in the sentlog setting stands for the account that
// submits: a shared im2000-smtpd keeps one log per account, in the file
// that account's own im2000-status reads.
const AccountPlaceholder = "%a"

// SentLog is where account's remote submissions are recorded: the sentlog
// setting with each %a replaced by account, else $HOME/.im2000-sent. With
// neither (a daemon under daemontools runs without HOME) it is an error,
// not a log in whatever directory the program runs in.
func SentLog(d conf.Dir, account string) (string, error) {
	def := ""
	if home, err := os.UserHomeDir(); err == nil && filepath.IsAbs(home) {
		def = filepath.Join(home, ".im2000-sent")
	}
	p, err := d.String("sentlog", def)
	if err != nil {
		return "", err
	}
	if p == "" {
		return "", fail.Temp(errors.New("no sent log: HOME is not set and neither is sentlog: set sentlog (im2000-conf(5)) or HOME"))
	}
	if !strings.Contains(p, AccountPlaceholder) {
		return p, nil
	}
	// The account becomes part of a path: only a name safe as one file's.
	if err := store.CheckAccount(account); err != nil {
		return "", fail.Perm(fmt.Errorf("sentlog %s: %w", p, err))
	}
	return strings.ReplaceAll(p, AccountPlaceholder, account), nil
}

// maxSubject bounds the subject a line keeps (a header line's limit), so
// that every line Record writes fits maxLine and is written at once.
const maxSubject = 998

// maxLine is the longest line ReadLog reads; a longer one was not written
// by Record and is skipped.
const maxLine = 4096

// cleanSubject makes the subject one line of at most maxSubject octets:
// control characters (a tab, a folded line's CR LF) become spaces.
func cleanSubject(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) > maxSubject {
		cut := maxSubject
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut]
	}
	return s
}

// maxUnix is the first second of the year 10000: a time past it cannot be
// printed as RFC 3339 (im2000-status --json); nor can an expiry.
const maxUnix = 253402300800

// maxLifetime is the longest lifetime a line keeps, the store's own bound
// (lib/store): no store keeps a message longer.
const maxLifetime = 100 * 365 * 24 * time.Hour

// line is s as the log holds it.
func (s Sent) line() ([]byte, error) {
	if err := store.CheckAccount(s.Account); err != nil {
		return nil, err
	}
	t := s.Submitted.Unix()
	if t < 0 || t >= maxUnix {
		return nil, fmt.Errorf("submission time %v out of range", s.Submitted)
	}
	when := strconv.FormatInt(t, 10)
	// A lifetime no store keeps, or one ending past maxUnix, is left out
	// (the expiry shows as unknown) rather than costing the whole line.
	if l := int64(s.Lifetime / time.Second); l > 0 && s.Lifetime <= maxLifetime && t+l < maxUnix {
		when += "+" + strconv.FormatInt(l, 10)
	}
	return fmt.Appendf(nil, "%s\t%s\t%s\t%s\n", s.ID, when, s.Account, cleanSubject(s.Subject)), nil
}

// number reads a decimal of digits alone: ParseInt would take a sign
// too, which Record never writes.
func number(s string) (int64, bool) {
	if s == "" || strings.Trim(s, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}

// parseLine reads one line without its LF; false for anything Record did
// not write (a line torn by a crash, a hand-edited one).
func parseLine(l string) (Sent, bool) {
	var f []string
	var life int64 // seconds; 0: unknown
	if strings.Contains(l, "\t") {
		if f = strings.SplitN(l, "\t", 4); len(f) != 4 || store.CheckAccount(f[2]) != nil {
			return Sent{}, false // a torn line lost its account's end: not anybody's
		}
		f[2], f[3] = f[3], f[2] // as the oldest form: id, time, subject, account
		if when, lt, ok := strings.Cut(f[1], "+"); ok {
			var good bool
			if life, good = number(lt); !good || life <= 0 || life > int64(maxLifetime/time.Second) {
				return Sent{}, false
			}
			f[1] = when
		}
	} else if f = strings.SplitN(l, " ", 3); len(f) < 2 {
		return Sent{}, false
	}
	id, err := msgid.Parse(f[0])
	if err != nil {
		return Sent{}, false
	}
	t, ok := number(f[1])
	if !ok || t >= maxUnix || t+life >= maxUnix {
		return Sent{}, false
	}
	s := Sent{ID: id, Submitted: time.Unix(t, 0), Lifetime: time.Duration(life) * time.Second}
	if len(f) > 2 {
		s.Subject = cleanSubject(f[2])
	}
	if len(f) > 3 {
		s.Account = f[3]
	}
	return s, true
}

// Record appends a submission to the sent log. The line is one write to a
// file opened O_APPEND, so im2000-inject and im2000-smtpd appending at
// once never interleave, and it is fsynced before Record returns: the
// message is committed at the store, and the log is the only place that
// lists it.
func Record(path string, s Sent) error {
	line, err := s.line()
	if err != nil {
		return err
	}
	f, created, readable, err := openLog(path)
	if err != nil {
		return err
	}
	defer f.Close()
	// A crash may have left the last line without its LF: end it first,
	// or this line would be glued to it and lost with it. A log its
	// writer may only write (mode 620, owner and smtpd's group) skips
	// this: a torn line then costs the next one too, never more.
	if fi, err := f.Stat(); err == nil && fi.Size() > 0 && readable {
		var last [1]byte
		if _, err := f.ReadAt(last[:], fi.Size()-1); err == nil && last[0] != '\n' {
			line = append([]byte{'\n'}, line...)
		}
	}
	if _, err := f.Write(line); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if created {
		if err := durable.SyncDir(filepath.Dir(path)); err != nil {
			return err
		}
	}
	return f.Close()
}

// errNotRegular refuses a sent log that is not a plain file of its own.
// With a shared im2000-smtpd (sentlog /home/%a/.im2000-sent) the file is
// its user's to replace, and smtpd may write files she may not: a
// symbolic link (or a hard link) to one of them would have smtpd append
// lines she chose to it, a FIFO would hang it.
var errNotRegular = errors.New("not a regular file of one link (a symbolic link, a hard link, a FIFO or a device): refused; remove it, the next submission creates it")

// logFlags: never follow a symbolic link, never block opening a FIFO.
const logFlags = os.O_APPEND | syscall.O_NOFOLLOW | syscall.O_NONBLOCK

// openLog opens the log to append to it (and, when it may, to read its
// last octet), creating it mode 600 when missing; created says whether it
// did, so that the directory is synced too.
func openLog(path string) (f *os.File, created, readable bool, err error) {
	for {
		readable = true
		f, err = os.OpenFile(path, os.O_RDWR|logFlags, 0)
		if errors.Is(err, os.ErrPermission) {
			readable = false // mode 620 is enough to append
			f, err = os.OpenFile(path, os.O_WRONLY|logFlags, 0)
		}
		if !errors.Is(err, os.ErrNotExist) {
			break
		}
		f, err = os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL|logFlags, 0o600)
		if !errors.Is(err, os.ErrExist) {
			created = err == nil
			break
		}
		// Another appender created it meanwhile (or it is a dangling
		// symbolic link, which the next open refuses): open that one.
	}
	if errors.Is(err, syscall.ELOOP) {
		err = errNotRegular // the caller names the log
	}
	if err != nil {
		return nil, false, false, err
	}
	if err := checkRegular(f, true); err != nil {
		f.Close()
		return nil, false, false, err
	}
	return f, created, readable, nil
}

// checkRegular refuses f unless it is a regular file, and with oneLink,
// one of a single name.
func checkRegular(f *os.File, oneLink bool) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !fi.Mode().IsRegular() || oneLink && ok && st.Nlink != 1 {
		return errNotRegular
	}
	return nil
}

// maxRead bounds what ReadLog reads: the last 4 MiB of the log, some
// 30000 lines, for the log grows forever (nothing prunes it) and a shared
// one may be filled by others.
const maxRead = 4 << 20

// maxSent bounds the lines ReadLog returns, the newest: each costs
// im2000-status one MSOAP Track.
const maxSent = 10000

// ReadLog reads account's lines of the sent log (Mine), oldest first,
// one per id (the first: a later line with the same id is another's
// forgery or a repeat), none submitted before since (older than any
// message the store still keeps), of the last maxRead octets and at most
// the maxSent newest. A missing log is empty.
func ReadLog(path, account string, since time.Time) ([]Sent, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// Reading follows a symbolic link, as the reader may read its target
	// anyway; a FIFO or a device is no log.
	if err := checkRegular(f, false); err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	var r io.Reader = f
	partial := fi.Size() > maxRead
	if partial {
		// From the octet before the last maxRead: if it ends a line, the
		// line skipped as cut is empty.
		if _, err := f.Seek(fi.Size()-maxRead-1, io.SeekStart); err != nil {
			return nil, err
		}
		r = io.LimitReader(f, maxRead+1)
	}
	return readLog(bufio.NewReaderSize(r, maxLine), account, since, partial)
}

// readLog reads lines as ReadLog says; with partial, the first line is
// cut and skipped.
func readLog(r *bufio.Reader, account string, since time.Time, partial bool) ([]Sent, error) {
	var out []Sent
	seen := map[msgid.ID]bool{}
	for {
		b, err := r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			for errors.Is(err, bufio.ErrBufferFull) { // skip the rest of an overlong line
				_, err = r.ReadSlice('\n')
			}
			b = nil
		}
		if partial {
			b, partial = nil, false
		}
		if len(b) > 0 {
			s, ok := parseLine(strings.TrimSuffix(string(b), "\n"))
			if ok && s.Mine(account) && !s.Submitted.Before(since) && !seen[s.ID] {
				seen[s.ID] = true
				out = append(out, s)
			}
		}
		if err == io.EOF {
			if len(out) > maxSent {
				out = out[len(out)-maxSent:]
			}
			return out, nil
		}
		if err != nil {
			return nil, err
		}
	}
}
