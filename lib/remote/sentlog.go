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
//	ID TAB UNIXTIME TAB ACCOUNT TAB SUBJECT LF
//
// The old form, "ID UNIXTIME SUBJECT" with single spaces, never held a tab
// (Record made every control character of the subject a space), so a tab
// tells the forms apart; a line of the old form names no account and is
// the log owner's own.

// Sent is one line of the sent log.
type Sent struct {
	ID        msgid.ID
	Submitted time.Time
	Account   string // who submitted it; "" on a line of the old form
	Subject   string
}

// Mine reports whether the line is account's: one that names it, or one
// of the old form, which names nobody and was its owner's.
func (s Sent) Mine(account string) bool { return s.Account == "" || s.Account == account }

// AccountPlaceholder in the sentlog setting stands for the account that
// submits: a shared im2000-smtpd keeps one log per account, in the file
// that account's own im2000-status reads.
const AccountPlaceholder = "%a"

// SentLog is where account's remote submissions are recorded: the sentlog
// setting with each %a replaced by account, else $HOME/.im2000-sent.
func SentLog(d conf.Dir, account string) (string, error) {
	home, _ := os.UserHomeDir()
	p, err := d.String("sentlog", filepath.Join(home, ".im2000-sent"))
	if err != nil || !strings.Contains(p, AccountPlaceholder) {
		return p, err
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
// printed as RFC 3339 (im2000-status --json).
const maxUnix = 253402300800

// line is s as the log holds it.
func (s Sent) line() ([]byte, error) {
	if err := store.CheckAccount(s.Account); err != nil {
		return nil, err
	}
	t := s.Submitted.Unix()
	if t < 0 || t >= maxUnix {
		return nil, fmt.Errorf("submission time %v out of range", s.Submitted)
	}
	return fmt.Appendf(nil, "%s\t%d\t%s\t%s\n", s.ID, t, s.Account, cleanSubject(s.Subject)), nil
}

// parseLine reads one line without its LF; false for anything Record did
// not write (a line torn by a crash, a hand-edited one).
func parseLine(l string) (Sent, bool) {
	var f []string
	if strings.Contains(l, "\t") {
		if f = strings.SplitN(l, "\t", 4); len(f) != 4 || store.CheckAccount(f[2]) != nil {
			return Sent{}, false // a torn line lost its account's end: not anybody's
		}
		f[2], f[3] = f[3], f[2] // as the old form: id, time, subject, account
	} else if f = strings.SplitN(l, " ", 3); len(f) < 2 {
		return Sent{}, false
	}
	id, err := msgid.Parse(f[0])
	if err != nil {
		return Sent{}, false
	}
	// Digits only: ParseInt would take a sign too, which Record never writes.
	if f[1] == "" || strings.Trim(f[1], "0123456789") != "" {
		return Sent{}, false
	}
	t, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil || t >= maxUnix {
		return Sent{}, false
	}
	s := Sent{ID: id, Submitted: time.Unix(t, 0)}
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
	f, created, err := openLog(path)
	if err != nil {
		return err
	}
	defer f.Close()
	// A crash may have left the last line without its LF: end it first,
	// or this line would be glued to it and lost with it.
	if fi, err := f.Stat(); err == nil && fi.Size() > 0 {
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

// openLog opens the log to append to it (and to read its last octet),
// creating it mode 600 when missing; created says whether it did, so
// that the directory is synced too.
func openLog(path string) (*os.File, bool, error) {
	for {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND, 0)
		if !errors.Is(err, os.ErrNotExist) {
			return f, false, err
		}
		f, err = os.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE|os.O_EXCL, 0o600)
		if !errors.Is(err, os.ErrExist) {
			return f, err == nil, err
		}
		// Another appender created it meanwhile: open that one.
	}
}

// ReadLog reads account's lines of the sent log (Mine), oldest first; a
// missing log is empty.
func ReadLog(path, account string) ([]Sent, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readLog(bufio.NewReaderSize(f, maxLine), account)
}

func readLog(r *bufio.Reader, account string) ([]Sent, error) {
	var out []Sent
	for {
		b, err := r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			for errors.Is(err, bufio.ErrBufferFull) { // skip the rest of an overlong line
				_, err = r.ReadSlice('\n')
			}
			b = nil
		}
		if len(b) > 0 {
			if s, ok := parseLine(strings.TrimSuffix(string(b), "\n")); ok && s.Mine(account) {
				out = append(out, s)
			}
		}
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
	}
}
