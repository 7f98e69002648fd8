package tests

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"im2000/lib/fail"
)

// converted are the programs whose logs follow the vocabulary of
// im2000-log(5): a file log.go holding one function per kind of event,
// and every line's fixed text in the LOGS section of the program's page.
// A program joins this list when it is converted (DESIGN-NOTES.md,
// "Logs").
var converted = []struct{ dir, page string }{
	{"../im2000-agentd", "../man/im2000-agentd.8"},
	{"../im2000-queryd", "../man/im2000-queryd.8"},
	{"../im2000-listd", "../man/im2000-listd.8"},
	{"../im2000-notifyd", "../man/im2000-notifyd.8"},
	{"../im2000-submitd", "../man/im2000-submitd.8"},
	{"../im2000-retrieved", "../man/im2000-retrieved.8"},
	{"../im2000-smtpd", "../man/im2000-smtpd.8"},
	{"../im2000-pop3d", "../man/im2000-pop3d.8"},
	{"../im2000-fetch", "../man/im2000-fetch.1"},
	{"../im2000-imapd", "../man/im2000-imapd.8"},
	{"../im2000-gatewayd", "../man/im2000-gatewayd.8"},
}

// shared are the packages that log in the log of the programs that call
// them, with a log.go of their own like a program's. A shared package's
// lines are documented in a section of im2000-log(5) of their own (the
// one place that lists them all), and, for each program in users, in the
// LOGS section of the program's page as well: an admin reading one
// program's page finds every line it can print, and the program's page is
// checked against the union of its own lines and its shared packages'
// (so that an entry there for lib/inbox's line is not "a line it does not
// log"). users is written by hand, not taken from the imports: fetch
// imports lib/inbox, which imports lib/auth, yet never checks a password;
// sharedUsers holds the list to every program that imports a package
// itself, but for those in quiet, which import it and print none of its
// lines (im2000-smtpd logs lib/submit's event from its own log.go, with
// the session's peer; im2000-submitd uses only its From rule). lib/session
// is the exception: its lines are the same in every DER server, and those
// servers' pages point to im2000-log(5) for them. A user that is not
// converted (im2000-inject, whose other messages speak to the user at the
// command line) still has its page's LOGS hold the shared lines.
var shared = []struct {
	dir, section string
	users, quiet []string
}{
	{"../lib/session", "Lines of every server", nil, nil},
	{"../lib/inbox", "Lines of the mail readers", []string{"im2000-fetch", "im2000-pop3d", "im2000-imapd"}, nil},
	{"../lib/auth", "Lines of the password checks", []string{"im2000-queryd", "im2000-submitd", "im2000-smtpd", "im2000-pop3d", "im2000-imapd"}, nil},
	{"../lib/submit", "Lines of a remote submission", []string{"im2000-inject"}, []string{"im2000-smtpd", "im2000-submitd"}},
}

// direct are the calls that write to the log; outside log.go a converted
// program makes none of them (fail.Recover's alert, fail.Usage and
// fail.NoArgs, which speak to the user at the command line, are not
// among them).
var direct = map[string]bool{"Info": true, "Warning": true, "Alert": true, "Fatal": true, "Warn": true, "Exit": true, "Log": true}

// TestLogsDocumented: every line a converted program or a shared package
// logs has its fixed text (up to the first % verb: "KIND: EVENT: ...") in
// its man page, every line documented there is one it logs, and only
// log.go logs.
func TestLogsDocumented(t *testing.T) {
	const logPage = "../man/im2000-log.5"
	byUser := map[string][]string{} // a program: its shared packages' lines
	for _, p := range shared {
		lines := ownLines(t, p.dir)
		checkDocumented(t, p.dir, lines, logPage, manSection(t, logPage, ".SS \""+p.section+"\""))
		for _, u := range p.users {
			byUser[u] = append(byUser[u], lines...)
		}
		if p.users != nil {
			sharedUsers(t, p.dir, append(p.users, p.quiet...))
		}
	}
	for _, c := range converted {
		lines := append(ownLines(t, c.dir), byUser[filepath.Base(c.dir)]...)
		checkDocumented(t, c.dir, lines, c.page, manSection(t, c.page, ".SH LOGS"))
		delete(byUser, filepath.Base(c.dir))
	}
	for u, lines := range byUser { // users not converted
		pages, _ := filepath.Glob("../man/" + u + ".[18]")
		if len(pages) != 1 {
			t.Errorf("%s: no page of its own", u)
			continue
		}
		doc := manSection(t, pages[0], ".SH LOGS")
		for _, l := range lines {
			if !strings.Contains(doc, l) {
				t.Errorf("%s may log %q, which %s does not document in LOGS", u, l, pages[0])
			}
		}
	}
}

// ownLines returns the lines dir's log.go logs, with fail.Recover's alert
// when dir calls it, after checking that no other file of dir logs.
func ownLines(t *testing.T, dir string) []string {
	lines := logLines(t, filepath.Join(dir, "log.go"))
	if checkNoDirectLogging(t, dir) {
		lines = append(lines, "alert: panic in") // fail.Recover's
	}
	if len(lines) == 0 {
		t.Errorf("%s/log.go: no log lines found", dir)
	}
	slices.Sort(lines) // two lines of one event, told once
	return slices.Compact(lines)
}

// checkDocumented fails the test for each of lines (dir's) that doc, the
// part of page that lists them, does not document, and for each entry of
// doc that none of lines begins with: a line no longer logged, or one
// misspelt.
func checkDocumented(t *testing.T, dir string, lines []string, page, doc string) {
	for _, l := range lines {
		if !strings.Contains(doc, l) {
			t.Errorf("%s logs %q, which %s does not document (a .TP entry with .B \"%s\")", dir, l, page, l)
		}
	}
	entry := regexp.MustCompile(`(?m)^\.TP\n\.B "((?:` + strings.Join(fail.Kinds, "|") + `):[^"]*)"`)
	for _, m := range entry.FindAllStringSubmatch(doc, -1) {
		found := false
		for _, l := range lines {
			found = found || strings.HasPrefix(l, m[1])
		}
		if !found {
			t.Errorf("%s documents %q, which %s does not log", page, m[1], dir)
		}
	}
}

// sharedUsers fails the test for each program that imports the shared
// package dir itself and is not among its users: its page would not be
// held to document the package's lines.
func sharedUsers(t *testing.T, dir string, users []string) {
	path := "im2000/" + strings.TrimPrefix(dir, "../")
	progs, _ := filepath.Glob("../im2000-*")
	for _, prog := range progs {
		files, _ := filepath.Glob(filepath.Join(prog, "*.go"))
		for _, file := range files {
			if strings.HasSuffix(file, "_test.go") {
				continue
			}
			f, err := parser.ParseFile(token.NewFileSet(), file, nil, parser.ImportsOnly)
			if err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			imports := slices.ContainsFunc(f.Imports, func(s *ast.ImportSpec) bool { return s.Path.Value == strconv.Quote(path) })
			if imports && !slices.Contains(users, filepath.Base(prog)) {
				t.Errorf("%s imports %s, whose lines it may print: add it to the package's users in logs_test.go and document them in its page's LOGS section", prog, path)
				break
			}
		}
	}
}

// logLines returns the fixed text of each line file logs: the format of
// each fail.Info, Warning and Alert call with the kind before it, each
// string literal that begins with a kind (lib/session's, which Server.Log
// writes), and "fatal:" for fail.Fatal, each up to its first % verb and
// without the blanks after.
func logLines(t *testing.T, file string) []string {
	f, err := parser.ParseFile(token.NewFileSet(), file, nil, 0)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	var out []string
	add := func(kind, format string) {
		text, _, _ := strings.Cut(format, "%")
		text = strings.TrimRight(text, " ")
		if kind != fail.KindFatal && strings.TrimSpace(strings.TrimPrefix(text, kind+":")) == "" {
			t.Errorf("%s: a %s line %q without an event: begin its format with a fixed phrase (\"accepted: %%v ...\")", file, kind, format)
		}
		out = append(out, text)
	}
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.CallExpr:
			sel, ok := n.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			if x, ok := sel.X.(*ast.Ident); !ok || x.Name != "fail" {
				return true
			}
			switch sel.Sel.Name {
			case "Info", "Warning", "Alert":
				kind := map[string]string{"Info": fail.KindInfo, "Warning": fail.KindWarning, "Alert": fail.KindAlert}[sel.Sel.Name]
				lit, ok := n.Args[0].(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					t.Errorf("%s: fail.%s with a format that is not a literal: its text cannot be checked against the man page", file, sel.Sel.Name)
					return true
				}
				s, _ := strconv.Unquote(lit.Value)
				add(kind, kind+": "+s)
				return false
			case "Fatal":
				add(fail.KindFatal, "fatal: ")
			case "Warn", "Exit":
				t.Errorf("%s: fail.%s writes a line without a kind: use fail.Info, Warning, Alert or Fatal", file, sel.Sel.Name)
			}
		case *ast.BasicLit:
			if n.Kind != token.STRING {
				return true
			}
			s, _ := strconv.Unquote(n.Value)
			for _, k := range fail.Kinds {
				if strings.HasPrefix(s, k+": ") {
					add(k, s)
				}
			}
		}
		return true
	})
	return out
}

// manSection returns the section of page that begins with the line
// heading (".SH LOGS", or a .SS of im2000-log(5)) up to the next section
// (or subsection, for a .SS), with troff's escapes for - and " undone.
func manSection(t *testing.T, page, heading string) string {
	b, err := os.ReadFile(page)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.NewReplacer(`\-`, "-", `\(dq`, `"`, `\e`, `\`).Replace(string(b))
	i := strings.Index(s, "\n"+heading+"\n")
	if i < 0 {
		t.Errorf("%s has no section %s", page, heading)
		return ""
	}
	s = s[i+len(heading)+2:]
	ends := []string{"\n.SH "}
	if strings.HasPrefix(heading, ".SS ") {
		ends = append(ends, "\n.SS ")
	}
	for _, end := range ends {
		if j := strings.Index(s, end); j >= 0 {
			s = s[:j+1]
		}
	}
	return s
}

// checkNoDirectLogging fails the test for each call in dir, outside
// log.go and the tests, that writes to the log: fail.Info, Warning, Alert,
// Fatal, Warn, Exit or Log, or a Log or logf method (lib/session's
// Server.Log). It says whether dir calls fail.Recover, whose alert the
// page must document.
func checkNoDirectLogging(t *testing.T, dir string) (recovers bool) {
	files, _ := filepath.Glob(filepath.Join(dir, "*.go"))
	for _, file := range files {
		if filepath.Base(file) == "log.go" || strings.HasSuffix(file, "_test.go") {
			continue
		}
		fset := token.NewFileSet()
		f, err := parser.ParseFile(fset, file, nil, 0)
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			x, _ := sel.X.(*ast.Ident)
			recovers = recovers || x != nil && x.Name == "fail" && sel.Sel.Name == "Recover"
			switch {
			case x != nil && x.Name == "fail" && direct[sel.Sel.Name],
				(x == nil || x.Name != "fail") && (sel.Sel.Name == "Log" || sel.Sel.Name == "logf"):
				t.Errorf("%s: %s logs directly: give the event a function in log.go and document its line", fset.Position(call.Pos()), render(sel))
			}
			return true
		})
	}
	return recovers
}

func render(sel *ast.SelectorExpr) string {
	if x, ok := sel.X.(*ast.Ident); ok {
		return x.Name + "." + sel.Sel.Name
	}
	return "." + sel.Sel.Name
}
