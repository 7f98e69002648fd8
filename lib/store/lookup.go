package store

import (
	"bufio"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"im2000/lib/msgid"
)

// Lookup opens the message that a recipient or list identifier gives
// access to, and returns the identifier's index (recipients first, then
// lists). Identifiers that are unknown, forged (the envelope does not list
// them), of a cancelled message, or of a message past its lifetime are
// all ErrNoSuch, alike.
func (s *Store) Lookup(rid msgid.ID, now time.Time) (*Message, int, error) {
	link := s.rcptPath(rid)
	target, err := os.Readlink(link)
	if err != nil {
		return nil, 0, ErrNoSuch
	}
	parts := strings.Split(target, "/")
	if len(parts) != 4 || parts[0] != ".." || parts[2] != "msg" || CheckAccount(parts[1]) != nil {
		return nil, 0, ErrNoSuch
	}
	m, err := openMessage(link, parts[1], filepath.Join(s.Root, parts[1]))
	if err != nil {
		return nil, 0, err
	}
	i := m.Env.index(rid)
	if i < 0 || now.After(m.Env.Expires()) {
		m.Close()
		return nil, 0, ErrNoSuch
	}
	return m, i, nil
}

// Header returns the message's header section: every field, with the line
// end of the last, without the empty line after it.
func (m *Message) Header() ([]byte, error) {
	r := bufio.NewReader(io.LimitReader(m.Body(), 1<<20))
	var h []byte
	start := true // at the start of a line
	for {
		// A line longer than the buffer comes in pieces: a piece that is
		// "\r\n" or "\n" is the empty line only at the start of a line,
		// not the end of a line that filled the buffer up to its line end
		// or up to the CR of it.
		line, err := r.ReadSlice('\n')
		if start && (string(line) == "\r\n" || string(line) == "\n") {
			return h, nil
		}
		h = append(h, line...)
		start = err == nil
		switch err {
		case nil, bufio.ErrBufferFull:
		case io.EOF:
			return h, nil // no body: all header
		default:
			return nil, err
		}
	}
}

// summaryFields are what a summaryonly retrieval returns.
var summaryFields = map[string]bool{"from": true, "to": true, "cc": true, "subject": true, "date": true, "message-id": true}

// Summary keeps the fields From, To, Cc, Subject, Date and Message-ID of a
// header section, as they stand, in their order.
func Summary(header []byte) []byte {
	var out []byte
	keep := false
	for len(header) > 0 {
		n := strings.IndexByte(string(header), '\n') + 1
		if n == 0 {
			n = len(header)
		}
		line := header[:n]
		header = header[n:]
		if line[0] != ' ' && line[0] != '\t' {
			name, _, _ := strings.Cut(string(line), ":")
			keep = summaryFields[strings.ToLower(strings.TrimSpace(name))]
		}
		if keep {
			out = append(out, line...)
		}
	}
	return out
}
