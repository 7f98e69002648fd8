package maildir

import (
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
