package tlsconf

import (
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"im2000/lib/tlsconf/tlstest"
)

// servingPair makes a good pair in a temporary directory and a Certs
// serving it, logging into lb.
func servingPair(t *testing.T, lb *logBuf) (c *Certs, cert, key string) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t)
	cert, key = filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	ca.WriteLeaf(t, cert, key, 1, "localhost")
	c = &Certs{CertFile: cert, KeyFile: key, Log: lb.logf}
	if err := c.Reload(true); err != nil {
		t.Fatal(err)
	}
	return c, cert, key
}

// A renewal gone wrong leaves a huge file at tlscert: every handshake
// checks the files under the lock all handshakes take, so the check must
// not read it whole (the review's attack: 512 MiB sparse, 512 MiB
// allocated and seconds per handshake). The old pair stays, said once.
func TestHugeCertRefused(t *testing.T) {
	var lb logBuf
	c, cert, _ := servingPair(t, &lb)
	big := cert + ".big"
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(512 << 20); err != nil { // sparse: costs no disk
		t.Fatal(err)
	}
	f.Close()
	if err := os.Rename(big, cert); err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := 0; i < 3; i++ { // what every handshake calls
		if got := serial(c); got != 1 {
			t.Fatalf("serving serial %d, want the old pair's 1", got)
		}
	}
	runtime.ReadMemStats(&after)
	if n := after.TotalAlloc - before.TotalAlloc; n > 16<<20 {
		t.Errorf("three handshakes' checks allocated %d MiB", n>>20)
	}
	if n := lb.count("keeping the certificate in use"); n != 1 {
		t.Errorf("%d log lines about keeping the old pair, want 1: %q", n, lb.lines)
	}
	if n := lb.count("more than a certificate chain"); n != 1 {
		t.Errorf("%d log lines saying the file is too big, want 1: %q", n, lb.lines)
	}
}

// A link to /dev/zero (or any device) would read without end; a FIFO
// would block the open until a writer came, holding the lock. Both are
// refused as not regular files, and the old pair stays.
func TestCertNotRegularRefused(t *testing.T) {
	for _, kind := range []string{"devzero", "fifo"} {
		t.Run(kind, func(t *testing.T) {
			var lb logBuf
			c, _, key := servingPair(t, &lb)
			tmp := key + ".new"
			switch kind {
			case "devzero":
				if err := os.Symlink("/dev/zero", tmp); err != nil {
					t.Fatal(err)
				}
			case "fifo":
				if err := syscall.Mkfifo(tmp, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.Rename(tmp, key); err != nil {
				t.Fatal(err)
			}
			got := make(chan int64, 1)
			go func() { got <- serial(c) }()
			select {
			case s := <-got:
				if s != 1 {
					t.Fatalf("serving serial %d, want the old pair's 1", s)
				}
			case <-time.After(30 * time.Second): // a bound, not a measure: it never returns when broken
				t.Fatal("the check of the files did not return")
			}
			if n := lb.count("not a regular file"); n != 1 {
				t.Errorf("want one log line saying the key is not a regular file: %q", lb.lines)
			}
		})
	}
}
