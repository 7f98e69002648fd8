package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"im2000/lib/inbox"
	"im2000/lib/wire/msrap"
)

// RETR and TOP stream a message from its store into an unlinked file in
// the user's state directory (lib/inbox.RetrieveTo holds one MSRAP page
// at a time, never more than the notification's size or databytes), and
// only once it is complete send "+OK" and the message from that file: a
// client never sees half a message under a "+OK", and a shared pop3d's
// memory does not grow with the messages its users read.

// retrieve fetches a message (or its header) into an unlinked temporary
// file, positioned at its start, and returns it with its size.
func (p *pop) retrieve(e *entry, kind uint64) (*os.File, int64, error) {
	f, err := os.CreateTemp(filepath.Join(p.state, p.account), "retr")
	if err != nil {
		return nil, 0, err
	}
	os.Remove(f.Name()) // nothing stays behind, whatever happens next
	p.bound()
	bw := bufio.NewWriterSize(f, 64<<10)
	n, err := p.inbox.RetrieveTo(e.e, kind, bw)
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, n, nil
}

// bound makes the session's lifetime the end of the work with stores: a
// RETR, a TOP, the silences of QUIT end with the session, and the
// maildrop's lock with them, whatever the stores do.
func (p *pop) bound() {
	if p.limits.Lifetime > 0 {
		p.inbox.SetDeadline(p.start.Add(p.limits.Lifetime))
	}
}

// retr answers RETR.
func (p *pop) retr(e *entry) {
	f, n, err := p.retrieve(e, msrap.All)
	if err != nil {
		p.retrieveError(e, err)
		return
	}
	defer f.Close()
	p.sendFrom(fmt.Sprintf("+OK %d octets", n), f, "")
}

// top sends the header and k lines of the body; with k = 0 only the
// header is retrieved from the store (headersonly).
func (p *pop) top(e *entry, k int) {
	kind := uint64(msrap.All)
	if k == 0 {
		kind = msrap.HeadersOnly
	}
	f, _, err := p.retrieve(e, kind)
	if err != nil {
		p.retrieveError(e, err)
		return
	}
	defer f.Close()
	if k == 0 {
		p.sendFrom("+OK", f, "\r\n") // headersonly comes without its blank line
		return
	}
	t := &topReader{r: bufio.NewReader(f), k: k, blank: true}
	p.sendFrom("+OK", t, "")
}

// retrieveError answers a failed RETR or TOP. A message gone from its
// store, or dropped by lib/inbox (refused, expired), is deleted for good
// in this session: not listed, not asked of its store again, not
// silenced at QUIT.
func (p *pop) retrieveError(e *entry, err error) {
	switch {
	case errors.Is(err, inbox.ErrGone):
		e.deleted, e.gone = true, true
		p.inbox.Done(e.e)
		p.reply("-ERR that message is gone from its store (cancelled or expired)")
	case errors.Is(err, inbox.ErrDropped):
		// lib/inbox logged why; the entry is off the pending queue.
		e.deleted, e.gone = true, true
		p.reply("-ERR [SYS/TEMP] the store broke the rules or is gone too long; that message is dropped")
	default:
		p.tempError(err)
	}
}

// sendFrom writes a multi-line response from r, then tail: CRLF line
// ends, dot-stuffed, streamed with a write deadline on each write.
func (p *pop) sendFrom(status string, r io.Reader, tail string) {
	w := bufio.NewWriterSize(&deadlineWriter{p.conn, p.writeDeadline}, 32<<10)
	w.WriteString(status + "\r\n")
	d := &dotWriter{w: w, start: true}
	if _, err := io.Copy(d, io.MultiReader(r, stringReader(tail))); err != nil {
		p.conn.Close() // half a response: the client must not take it for whole
		return
	}
	d.end()
	w.WriteString(".\r\n")
	w.Flush()
}

func stringReader(s string) io.Reader { return &stringR{s} }

type stringR struct{ s string }

func (r *stringR) Read(b []byte) (int, error) {
	if r.s == "" {
		return 0, io.EOF
	}
	n := copy(b, r.s)
	r.s = r.s[n:]
	return n, nil
}

type deadlineWriter struct {
	c interface {
		io.Writer
		SetWriteDeadline(time.Time) error
	}
	deadline func() time.Time // limits.go: the idle timeout, within the lifetime
}

func (d *deadlineWriter) Write(b []byte) (int, error) {
	d.c.SetWriteDeadline(d.deadline())
	return d.c.Write(b)
}

// dotWriter writes a message as a POP3 multi-line body (RFC 1939 section
// 3): every line ends in CRLF (CRs before an LF, and those at the very
// end, are dropped, and CRLF written), and a line starting with "." gets
// another in front.
type dotWriter struct {
	w     *bufio.Writer
	start bool // at the start of a line
	crs   int  // CRs held until the next octet shows what they end
}

func (d *dotWriter) Write(b []byte) (int, error) {
	for _, c := range b {
		switch c {
		case '\n':
			d.crs = 0
			d.w.WriteString("\r\n")
			d.start = true
			continue
		case '\r':
			d.crs++
			d.start = false
			continue
		}
		for ; d.crs > 0; d.crs-- {
			d.w.WriteByte('\r')
		}
		if d.start && c == '.' {
			d.w.WriteByte('.')
		}
		d.start = false
		d.w.WriteByte(c)
	}
	return len(b), nil
}

// end finishes a last line without its end.
func (d *dotWriter) end() {
	if !d.start || d.crs > 0 {
		d.crs = 0
		d.w.WriteString("\r\n")
		d.start = true
	}
}

// topReader passes a message's header section, its blank line, and k
// lines of its body, then ends; a header without a blank line after it
// gets one.
type topReader struct {
	r     *bufio.Reader
	k     int
	body  bool // past the header's blank line
	blank bool // the current line has nothing but CRs so far
	lines int  // body lines passed
	done  bool
	extra string // what goes after the end of the input
}

func (t *topReader) Read(b []byte) (int, error) {
	if t.done {
		if t.extra == "" {
			return 0, io.EOF
		}
		n := copy(b, t.extra)
		t.extra = t.extra[n:]
		return n, nil
	}
	n := 0
	for n < len(b) {
		c, err := t.r.ReadByte()
		if err != nil {
			t.done = true
			if !t.body { // no blank line ended the header: send one
				t.extra = "\n"
				if !t.blank {
					t.extra = "\n\n"
				}
			}
			return n, nil
		}
		b[n] = c
		n++
		switch c {
		case '\n':
			if !t.body && t.blank {
				t.body = true
			} else if t.body {
				t.lines++
			}
			t.blank = true
			if t.body && t.lines >= t.k {
				t.done = true
				return n, nil
			}
		case '\r':
		default:
			t.blank = false
		}
	}
	return n, nil
}
