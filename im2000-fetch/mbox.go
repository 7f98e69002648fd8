package main

import (
	"bufio"
	"fmt"
	"io"
	"time"

	"im2000/lib/maildir"
)

// writeMbox writes one message (CRLF or LF line ends, as read from r) to
// w as an mboxrd entry: a From_ line naming sender, the message with LF
// line ends and ">" before each line that reads "From " after any ">"s,
// and a blank line. It streams: no line is held whole.
func writeMbox(w *bufio.Writer, sender string, at time.Time, r io.Reader) error {
	fmt.Fprintf(w, "From %s %s\n", sender, at.UTC().Format("Mon Jan _2 15:04:05 2006"))
	q := &mboxrd{w: w, start: true}
	lf := maildir.NewLFWriter(q)
	if _, err := io.Copy(lf, r); err != nil {
		return err
	}
	lf.Close()
	q.end()
	if !q.start {
		w.WriteByte('\n')
	}
	_, err := w.WriteString("\n")
	return err
}

// mboxrd quotes From_ lines as bytes pass: at the start of a line it
// counts ">"s and matches "From " before deciding whether a ">" goes in
// front; what it held back is then written as it was.
type mboxrd struct {
	w     *bufio.Writer
	start bool // at the start of a line (before any ">" or "From " octet)
	gts   int  // ">"s held at the start of the line
	from  int  // octets of "From " matched after them
	done  bool // the line's start is decided
}

const fromLine = "From "

func (q *mboxrd) flush(quote bool) {
	if quote {
		q.w.WriteByte('>')
	}
	for range q.gts {
		q.w.WriteByte('>')
	}
	q.w.WriteString(fromLine[:q.from])
	q.gts, q.from, q.done = 0, 0, true
}

func (q *mboxrd) Write(p []byte) (int, error) {
	for _, c := range p {
		if q.start {
			q.start, q.done = false, false
		}
		if !q.done {
			switch {
			case q.from == 0 && c == '>':
				q.gts++
				continue
			case c == fromLine[q.from]:
				q.from++
				if q.from == len(fromLine) {
					q.flush(true)
				}
				continue
			default:
				q.flush(false)
			}
		}
		q.w.WriteByte(c)
		if c == '\n' {
			q.start = true
		}
	}
	return len(p), nil
}

// end writes what the last line held back.
func (q *mboxrd) end() {
	if !q.start && !q.done {
		q.flush(false)
	}
}
