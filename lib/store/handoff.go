package store

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"im2000/lib/durable"
	"im2000/lib/msgid"
)

// A hand-off to SMTP (im2000-notifyd's smarthost, issue 20) is recorded
// once per SMTP transaction, whatever the number of recipients the relay
// took in it, as one line appended to status/<id>.smtp:
//
//	handoff <unix seconds> <domain> <relay host:port> <reply, Go-quoted>
//
// The recipients it covers are those of the domain in state smtp whose
// last attempt is at or after its time and before the next record's for
// the domain: notifyd writes the record, then the recipients' state with
// the same time as their last attempt. A line is appended in one write(2)
// under the message file's flock and fsynced (the directory too when the
// file is new); a line torn by a crash has no newline and is cut away by
// the next writer and skipped by readers.

// HandOff is one SMTP transaction's record.
type HandOff struct {
	At     time.Time
	Domain string
	Relay  string // host:port, as it was dialled
	Reply  string // the relay's reply to the final dot: it normally names its queue id
}

// maxHandOffReply bounds the reply kept: what a hostile relay says is
// not the store's to keep in full.
const maxHandOffReply = 200

func (a *Account) handOffPath(id msgid.ID) string { return a.path("status", id) + ".smtp" }

// AddHandOff records a hand-off of the open message; it returns once the
// record is on disk.
func (m *Message) AddHandOff(h HandOff) error {
	if strings.ContainsAny(h.Domain+h.Relay, " \n") || h.Domain == "" || h.Relay == "" {
		return fmt.Errorf("store: hand-off to %q via %q: not a domain and a host:port", h.Domain, h.Relay)
	}
	reply := h.Reply
	if len(reply) > maxHandOffReply {
		reply = reply[:maxHandOffReply]
	}
	line := fmt.Sprintf("handoff %d %s %s %s\n", h.At.Unix(), h.Domain, h.Relay, strconv.QuoteToASCII(reply))
	if err := flock(m.f); err != nil {
		return err
	}
	defer unlock(m.f)
	a := &Account{s: m.s, Name: m.Account, dir: m.dir}
	path := a.handOffPath(m.Env.ID)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	end := fi.Size()
	if end > 0 { // a line torn by a crash ends without a newline: cut it
		last := make([]byte, min(end, 4096))
		if _, err := f.ReadAt(last, end-int64(len(last))); err != nil {
			return err
		}
		if i := bytes.LastIndexByte(last, '\n'); i != len(last)-1 {
			cut := end - int64(len(last)) + int64(i) + 1
			if i < 0 && end > int64(len(last)) {
				return corrupt("%s: a line longer than 4096 octets", path)
			}
			if err := f.Truncate(cut); err != nil {
				return err
			}
			end = cut
		}
	}
	if _, err := f.WriteAt([]byte(line), end); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if end == 0 {
		return durable.SyncDir(filepath.Dir(path))
	}
	return nil
}

// HandOffs reads the hand-offs of message id, oldest first: none for a
// message never handed to SMTP, or handed off before they were recorded.
func (a *Account) HandOffs(id msgid.ID) ([]HandOff, error) {
	f, err := os.Open(a.handOffPath(id))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var hs []HandOff
	sc := bufio.NewScanner(io.LimitReader(f, 16<<20))
	for sc.Scan() {
		f := strings.SplitN(sc.Text(), " ", 5)
		if len(f) != 5 || f[0] != "handoff" {
			continue // a torn or unknown line: a later version may add some
		}
		at, err1 := strconv.ParseInt(f[1], 10, 64)
		reply, err2 := strconv.Unquote(f[4])
		if err1 != nil || err2 != nil {
			continue
		}
		hs = append(hs, HandOff{At: time.Unix(at, 0), Domain: f[2], Relay: f[3], Reply: reply})
	}
	return hs, sc.Err()
}

// HandOffOf is the hand-off that took a recipient at domain in state smtp
// whose last attempt was at last: the latest record for the domain not
// after it. ok is false when none is recorded.
func HandOffOf(hs []HandOff, domain string, last time.Time) (h HandOff, ok bool) {
	for _, x := range hs {
		if strings.EqualFold(x.Domain, domain) && !x.At.After(last) {
			h, ok = x, true
		}
	}
	return h, ok
}
