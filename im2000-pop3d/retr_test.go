package main

import (
	"bufio"
	"bytes"
	"io"
	"testing"
)

// stuffed is a multi-line body made the way pop3d did before it streamed:
// every line's CRs and LF replaced by one CRLF, a leading dot doubled.
func stuffed(data []byte) []byte {
	var b bytes.Buffer
	for _, line := range bytes.SplitAfter(data, []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) > 0 && line[0] == '.' {
			b.WriteByte('.')
		}
		b.Write(line)
		b.WriteString("\r\n")
	}
	return b.Bytes()
}

// FuzzDotWriter: streamed in chunks of any size, dotWriter writes what
// stuffing the whole body at once writes, and the topReader passes a
// prefix of the message that holds the whole header.
func FuzzDotWriter(f *testing.F) {
	f.Add([]byte("Subject: x\r\n\r\n.a\r\n..\r\n.\r\nend"), uint8(1), uint8(1))
	f.Add([]byte("a\r\r\n\r.b\n\r"), uint8(2), uint8(0))
	f.Add([]byte("Subject: no body"), uint8(3), uint8(2))
	f.Fuzz(func(t *testing.T, data []byte, chunk, k uint8) {
		var out bytes.Buffer
		w := bufio.NewWriter(&out)
		d := &dotWriter{w: w, start: true}
		n := int(chunk%7) + 1
		for i := 0; i < len(data); i += n {
			d.Write(data[i:min(i+n, len(data))])
		}
		d.end()
		w.Flush()
		if want := stuffed(data); !bytes.Equal(out.Bytes(), want) {
			t.Fatalf("%q in chunks of %d: %q, want %q", data, n, out.Bytes(), want)
		}
		top, err := io.ReadAll(&topReader{r: bufio.NewReader(bytes.NewReader(data)), k: int(k%4) + 1, blank: true})
		if err != nil {
			t.Fatal(err)
		}
		if want := topRef(data, int(k%4)+1); !bytes.Equal(top, want) {
			t.Fatalf("TOP %d of %q: %q, want %q", k%4+1, data, top, want)
		}
	})
}

// topRef is TOP on a whole message: the lines up to the first that holds
// nothing but CRs, and k more; a blank line added when there is none.
func topRef(data []byte, k int) []byte {
	var out []byte
	body, n := false, 0
	last := data
	for len(last) > 0 {
		i := bytes.IndexByte(last, '\n')
		if i < 0 {
			break
		}
		line := last[:i+1]
		last = last[i+1:]
		out = append(out, line...)
		if !body {
			body = len(bytes.Trim(line[:i], "\r")) == 0
			continue
		}
		if n++; n >= k {
			return out
		}
	}
	out = append(out, last...)
	if !body {
		if len(bytes.Trim(last, "\r")) == 0 {
			return append(out, '\n')
		}
		return append(out, "\n\n"...)
	}
	return out
}
