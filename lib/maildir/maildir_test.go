package maildir

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func TestDeliver(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "Maildir")
	a, err := Deliver(dir, []byte("Subject: x\r\n\r\nbody\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Deliver(dir, []byte("y\n"))
	if a == b {
		t.Fatal("two deliveries, one name")
	}
	got, _ := os.ReadFile(filepath.Join(dir, "new", a))
	if string(got) != "Subject: x\n\nbody\n" {
		t.Fatalf("delivered %q", got)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(ents) != 0 {
		t.Fatalf("tmp not empty: %v", ents)
	}
}

// TestDeliverFromFails: a write that fails leaves nothing in tmp/ or new/.
func TestDeliverFromFails(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "Maildir")
	bad := errors.New("the store went away")
	_, err := DeliverFrom(dir, func(w io.Writer) error {
		w.Write([]byte("Subject: half\r\n"))
		return bad
	})
	if !errors.Is(err, bad) {
		t.Fatalf("err %v", err)
	}
	for _, d := range []string{"tmp", "new"} {
		if ents, _ := os.ReadDir(filepath.Join(dir, d)); len(ents) != 0 {
			t.Fatalf("%s not empty: %v", d, ents)
		}
	}
}

// FuzzLFWriter: whatever the chunks, LFWriter writes what replacing every
// CRLF by LF in the whole input gives.
func FuzzLFWriter(f *testing.F) {
	f.Add([]byte("a\r\nb\r\r\n\r"), uint8(1))
	f.Add([]byte("\r\r\n\n\r"), uint8(3))
	f.Fuzz(func(t *testing.T, in []byte, chunk uint8) {
		var out bytes.Buffer
		l := NewLFWriter(&out)
		n := int(chunk%7) + 1
		for i := 0; i < len(in); i += n {
			l.Write(in[i:min(i+n, len(in))])
		}
		l.Close()
		if want := bytes.ReplaceAll(in, []byte("\r\n"), []byte("\n")); !bytes.Equal(out.Bytes(), want) {
			t.Fatalf("%q in chunks of %d: %q, want %q", in, n, out.Bytes(), want)
		}
	})
}
