package tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestManPages checks that every program has a man page, that every page
// renders without groff warnings, and that every option a program's -h
// lists is documented in its page.
func TestManPages(t *testing.T) {
	pages, _ := filepath.Glob("../man/*.[1-8]")
	if len(pages) == 0 {
		t.Fatal("no man pages")
	}
	for _, p := range pages {
		cmd := exec.Command("groff", "-t", "-man", "-Tutf8", "-ww", "-z", p)
		cmd.Env = append(os.Environ(), "LC_ALL=C.UTF-8")
		if out, err := cmd.CombinedOutput(); err != nil || len(out) > 0 {
			t.Errorf("%s: groff: %v: %s", p, err, out)
		}
	}
	programs, _ := filepath.Glob("../im2000-*")
	option := regexp.MustCompile(`(?m)(?:^|[\s\[,])(--?[a-zA-Z][a-zA-Z]*)`)
	for _, dir := range programs {
		prog := filepath.Base(dir)
		page, _ := filepath.Glob("../man/" + prog + ".[18]")
		if len(page) != 1 {
			t.Errorf("%s: no man page in section 1 or 8", prog)
			continue
		}
		text, _ := os.ReadFile(page[0])
		out, err := exec.Command(filepath.Join(bin, prog), "-h").Output()
		if err != nil {
			t.Errorf("%s -h: %v", prog, err)
			continue
		}
		for _, m := range option.FindAllStringSubmatch(string(out), -1) {
			if !strings.Contains(string(text), strings.ReplaceAll(m[1], "-", `\-`)) {
				t.Errorf("%s -h lists %s, which its man page does not document", prog, m[1])
			}
		}
	}
}
