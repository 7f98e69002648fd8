// Package maildir delivers messages into a Maildir the way qmail-local
// does: a unique name in tmp/, fsync, rename into new/, fsync new/.
package maildir

import (
	"bytes"
	"fmt"
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
	_, err = f.Write(bytes.ReplaceAll(msg, []byte("\r\n"), []byte("\n")))
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
