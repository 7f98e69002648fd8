package mailmsg

import (
	"bufio"
	"io"
	"strings"
)

// HeaderSection reads a message's header section from r: every field, with
// the line end of the last, without the empty line after it; at most 1 MiB
// (all of it if there is no empty line). What MSRAP serves for
// headersonly, and summaryonly before Summary.
func HeaderSection(r io.Reader) ([]byte, error) {
	br := bufio.NewReader(io.LimitReader(r, 1<<20))
	var h []byte
	start := true // at the start of a line
	for {
		// A line longer than the buffer comes in pieces: a piece that is
		// "\r\n" or "\n" is the empty line only at the start of a line,
		// not the end of a line that filled the buffer up to its line end
		// or up to the CR of it.
		line, err := br.ReadSlice('\n')
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
