// Package maildir delivers messages into a Maildir the way qmail-local
// does: a unique name in tmp/, fsync, rename into new/, fsync new/.
package maildir

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	"im2000/lib/durable"
)

var seq atomic.Int64

// Deliver writes msg (CRLF line ends are stored as LF, as Maildir readers
// expect) and returns its file name in new/. The Maildir is created if
// missing.
func Deliver(dir string, msg []byte) (string, error) {
	return DeliverFrom(dir, func(w io.Writer) error {
		_, err := w.Write(msg)
		return err
	})
}

// DeliverFrom is Deliver streaming: write writes the message (CRLF or LF
// line ends) into the file in tmp/, which is then synced and renamed into
// new/, and new/ synced. Nothing of it is held in memory here. When write
// fails, the file in tmp/ is removed and write's error returned.
func DeliverFrom(dir string, write func(w io.Writer) error) (string, error) {
	for _, d := range []string{"", "tmp", "new", "cur"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return "", err
		}
	}
	host, _ := os.Hostname()
	now := time.Now()
	name := fmt.Sprintf("%d.M%dP%dQ%d.%s", now.Unix(), now.Nanosecond()/1000, os.Getpid(), seq.Add(1), sanitize(host))
	tmp := filepath.Join(dir, "tmp", name)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", err
	}
	bw := bufio.NewWriterSize(f, 64<<10)
	lf := NewLFWriter(bw)
	err = write(lf)
	if err == nil {
		err = lf.Close()
	}
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, "new", name))
	}
	if err != nil {
		os.Remove(tmp)
		return "", err
	}
	return name, durable.SyncDir(filepath.Join(dir, "new"))
}

// LFWriter turns CRLF line ends into LF as the bytes pass, whatever the
// chunks: a CR at the end of one write is held until the next shows
// whether an LF follows. Close writes a CR still held.
type LFWriter struct {
	w  io.Writer
	cr bool // a CR is held
}

// NewLFWriter returns an LFWriter writing to w.
func NewLFWriter(w io.Writer) *LFWriter { return &LFWriter{w: w} }

func (l *LFWriter) Write(p []byte) (int, error) {
	out := make([]byte, 0, len(p)+1)
	for _, c := range p {
		if l.cr {
			l.cr = false
			if c != '\n' {
				out = append(out, '\r')
			}
		}
		if c == '\r' {
			l.cr = true
			continue
		}
		out = append(out, c)
	}
	if _, err := l.w.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Close writes a CR that ended the input.
func (l *LFWriter) Close() error {
	if !l.cr {
		return nil
	}
	l.cr = false
	_, err := l.w.Write([]byte{'\r'})
	return err
}

// sanitize keeps "/" and ":" out of the host part, as the Maildir spec asks.
func sanitize(host string) string {
	var b []byte
	for i := 0; i < len(host); i++ {
		switch c := host[i]; c {
		case '/':
			b = append(b, `\057`...)
		case ':':
			b = append(b, `\072`...)
		default:
			b = append(b, c)
		}
	}
	if len(b) == 0 {
		return "localhost" + strconv.Itoa(os.Getpid())
	}
	return string(b)
}
