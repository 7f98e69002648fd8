package tlsconf

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"im2000/lib/conf"
	"im2000/lib/tlsconf/tlstest"
)

func TestTrackerDurable(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tlsseen")
	tr := &Tracker{Dir: dir}
	if _, ok := tr.Seen("rnasp", "example.org"); ok {
		t.Fatal("seen before anything was recorded")
	}
	if err := tr.Record("rnasps", "Example.ORG."); err != nil {
		t.Fatal(err)
	}
	// A new process (a new Tracker) reads it from disk; the TLS form's
	// name and the service's are one key.
	again := &Tracker{Dir: dir}
	if at, ok := again.Seen("rnasp", "example.org"); !ok || at == "" {
		t.Fatalf("not remembered across processes: %q %v", at, ok)
	}
	if _, ok := again.Seen("msrap", "example.org"); ok {
		t.Fatal("one service's TLS made another's required")
	}
	// Names that cannot be domains are never files.
	for _, bad := range []string{"../x", "a/b", "..", "", "127.0.0.1", ".hidden", strings.Repeat("a", 300)} {
		if err := tr.Record("msrap", bad); err != nil {
			t.Fatal(err)
		}
		if _, ok := (&Tracker{Dir: dir}).Seen("msrap", bad); ok {
			t.Fatalf("%q recorded", bad)
		}
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("files in %s: %v", dir, ents)
	}
	// A damaged record still says TLS: the stricter reading.
	os.WriteFile(filepath.Join(dir, "msrap@damaged.org"), nil, 0o600)
	if _, ok := (&Tracker{Dir: dir}).Seen("msrap", "damaged.org"); !ok {
		t.Fatal("an empty record read as never seen")
	}
}

func TestLoadClient(t *testing.T) {
	d := conf.Dir(t.TempDir())
	ca := tlstest.NewCA(t)
	os.WriteFile(d.Path("ca.pem"), ca.PEM, 0o644)
	os.WriteFile(d.Path("tlsca"), []byte("ca.pem\n"), 0o644)
	os.WriteFile(d.Path("tlsrequire"), []byte("# must\nSecure.Example\n"), 0o644)
	c, err := LoadClient(d)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Required("rnasp", "secure.example."); !ok {
		t.Fatal("tlsrequire not applied")
	}
	if _, ok := c.Required("rnasp", "other.example"); ok {
		t.Fatal("a domain not in tlsrequire required")
	}
	if err := c.Reached("msrap", "other.example"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(d.Path("tlsdomains/msrap@other.example")); err != nil {
		t.Fatalf("tlsseen's default is not in the config directory: %v", err)
	}
	if cfg := c.Config("x.example"); cfg.RootCAs == nil || cfg.ServerName != "x.example" || cfg.ClientSessionCache == nil {
		t.Fatalf("config: %+v", cfg)
	}
	os.WriteFile(d.Path("tlsca"), []byte("missing.pem\n"), 0o644)
	if _, err := LoadClient(d); err == nil {
		t.Fatal("a missing tlsca file is not an error")
	}
}
