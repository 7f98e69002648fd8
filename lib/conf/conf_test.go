package conf

import (
	"os"
	"path/filepath"
	"testing"
)

func TestDir(t *testing.T) {
	d := Dir(t.TempDir())
	os.WriteFile(d.Path("me"), []byte("  example.org \nignored\n"), 0o644)
	os.WriteFile(d.Path("databytes"), []byte("1000\n"), 0o644)
	os.WriteFile(d.Path("bad"), []byte("ten\n"), 0o644)
	os.WriteFile(d.Path("routes"), []byte("# comment\n\na.org 127.0.0.1:1\n b.org x:2 \n"), 0o644)

	if s, err := d.String("me", "x"); s != "example.org" || err != nil {
		t.Errorf("String(me) = %q, %v", s, err)
	}
	if s, err := d.String("missing", "def"); s != "def" || err != nil {
		t.Errorf("String(missing) = %q, %v", s, err)
	}
	if n, err := d.Int("databytes", 5); n != 1000 || err != nil {
		t.Errorf("Int(databytes) = %d, %v", n, err)
	}
	if n, err := d.Int("missing", 5); n != 5 || err != nil {
		t.Errorf("Int(missing) = %d, %v", n, err)
	}
	if _, err := d.Int("bad", 5); err == nil {
		t.Error("Int(bad) accepted")
	}
	l, err := d.Lines("routes")
	if err != nil || len(l) != 2 || l[1] != "b.org x:2" {
		t.Errorf("Lines = %q, %v", l, err)
	}
	os.Mkdir(filepath.Join(string(d), "adir"), 0o755)
	if _, err := d.String("adir", ""); err == nil {
		t.Error("String on a directory did not fail")
	}
}
