package tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestDemo runs make demo's driver against the freshly built programs.
func TestDemo(t *testing.T) {
	cmd := exec.Command("go", "run", "./demo", "-bin", bin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out)
	}
	for _, want := range []string{"silenced\treadall", "list news read 1", "Lists are archives you scan.", "done in"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the demo's output lacks %q:\n%s", want, out)
		}
	}
}

// TestInstall installs into a user prefix, as a user without root would,
// and reads an installed page with man.
func TestInstall(t *testing.T) {
	prefix := t.TempDir()
	cmd := exec.Command("make", "-C", "..", "install", "PREFIX="+prefix)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make install: %v\n%s", err, out)
	}
	programs, _ := filepath.Glob("../im2000-*")
	for _, p := range programs {
		if fi, err := os.Stat(filepath.Join(prefix, "bin", filepath.Base(p))); err != nil || fi.Mode()&0o111 == 0 {
			t.Errorf("%s not installed as a program: %v", filepath.Base(p), err)
		}
	}
	pages, _ := filepath.Glob("../man/*.[1-8]")
	for _, p := range pages {
		sec := p[len(p)-1:]
		if _, err := os.Stat(filepath.Join(prefix, "share", "man", "man"+sec, filepath.Base(p))); err != nil {
			t.Errorf("%s not installed: %v", filepath.Base(p), err)
		}
	}
	man := exec.Command("man", "im2000-submitd")
	man.Env = append(os.Environ(), "MANPATH="+filepath.Join(prefix, "share", "man"), "MANPAGER=cat", "PAGER=cat", "MANWIDTH=80")
	out, err := man.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "MSOAP server") {
		t.Fatalf("man im2000-submitd from the prefix: %v\n%s", err, out)
	}
}
