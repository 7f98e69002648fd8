package tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// manExamples returns the command lines of a page's EXAMPLES section: the
// lines of its .nf/.fi blocks, troff escapes for '-' undone.
func manExamples(t *testing.T, page string) []string {
	t.Helper()
	b, err := os.ReadFile(page)
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	i := strings.Index(text, "\n.SH EXAMPLES\n")
	if i < 0 {
		return nil
	}
	section := text[i+1:]
	if j := strings.Index(section[1:], "\n.SH "); j >= 0 {
		section = section[:j+1]
	}
	var lines []string
	in := false
	for _, l := range strings.Split(section, "\n") {
		switch {
		case l == ".nf":
			in = true
		case l == ".fi":
			in = false
		case in && strings.TrimSpace(l) != "":
			lines = append(lines, strings.ReplaceAll(l, `\-`, "-"))
		}
	}
	return lines
}

// TestManExamples runs every example of every manual page as a user would
// type it, each page's in a deployment fit for it. A page given examples
// without a way to run them here fails the test, so that none is left
// untried.
func TestManExamples(t *testing.T) {
	runners := map[string]func(t *testing.T, lines []string){
		"im2000-inject.1": injectExamples,
		// im2000-locate(8)'s examples need a host deployment with DNS
		// records: TestHostSetup runs every one of them there.
		"im2000-locate.8": nil,
	}
	pages, _ := filepath.Glob("../man/*.[158]")
	found := 0
	for _, page := range pages {
		lines := manExamples(t, page)
		if len(lines) == 0 {
			continue
		}
		found++
		run, ok := runners[filepath.Base(page)]
		if !ok {
			t.Errorf("%s has examples, and no runner in TestManExamples: add one", page)
			continue
		}
		if run != nil {
			t.Run(filepath.Base(page), func(t *testing.T) { run(t, lines) })
		}
	}
	if found < len(runners) {
		t.Errorf("examples found in %d pages, want at least %d", found, len(runners))
	}
}

// injectExamples runs im2000-inject(1)'s examples as alice, in a directory
// holding the files they read, and checks that each committed a message.
func injectExamples(t *testing.T, lines []string) {
	e := newEnv(t, "alice")
	e.setConf("lists/golang", "alice")
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "message.txt"), []byte("To: bob@example.net\nSubject: from a file\n\nhello\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "announcement.txt"), []byte("Subject: an announcement\n\nnews\n"), 0o644)
	vars := make([]string, 0, len(e.vars))
	for _, v := range e.vars {
		if strings.HasPrefix(v, "PATH=") {
			v = "PATH=" + bin + ":" + strings.TrimPrefix(v, "PATH=")
		}
		vars = append(vars, v)
	}
	for i, l := range lines {
		if !strings.HasPrefix(l, "im2000-inject ") && !strings.Contains(l, "| im2000-inject ") {
			t.Errorf("%q: not an im2000-inject command", l)
			continue
		}
		cmd := exec.Command("/bin/sh", "-c", l)
		cmd.Dir, cmd.Env = dir, vars
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("the example %q: %v\n%s", l, err, out)
			continue
		}
		checkLog(t, "im2000-inject", string(out))
		if n := len(archived(t, e)); n != i+1 {
			t.Errorf("after the example %q, alice's archive holds %d messages, want %d", l, n, i+1)
		}
	}
}
