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
	"syscall"
	"testing"
	"time"

	"im2000/lib/fail"
	"im2000/lib/session"
	"im2000/lib/wire"
	"im2000/lib/wire/msoap"
	"im2000/lib/wire/rnasp"
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

// TestSettingsSIGHUP: agentd and queryd as listeners log the settings in
// force at start, and on SIGHUP read them again and put them in force for
// the sessions that begin after it (a quota, the sessions per address);
// settings that do not load leave those in force, with a warning.
func TestSettingsSIGHUP(t *testing.T) {
	e := newEnv(t, "bob")
	e.setConf("me", "example.net")
	e.setConf("agentquota", "2")
	spool := filepath.Join(t.TempDir(), "agent")
	for _, d := range []string{spool, filepath.Join(spool, "bob")} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	vars := append(e.vars, "IM2000_AGENT="+spool)
	addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	agentd, logs := daemonEnv(t, vars, addr, filepath.Join(bin, "im2000-agentd"), "-l", addr)
	settings := func(n int) []string {
		return regexp.MustCompile(`(?m)^im2000-agentd: info: settings: .*$`).FindAllString(logs.String(), n)
	}
	await(t, 5*time.Second, "agentd's settings line", func() bool { return len(settings(-1)) == 1 })
	if s := settings(1)[0]; !strings.Contains(s, " agentquota=2 ") || !strings.Contains(s, ` me="example.net" `) || !strings.Contains(s, " sessionsperaddr=10 ") {
		t.Errorf("agentd's settings line: %s", s)
	}
	first := dialFrom(t, "127.0.0.1", addr)
	if r := notifyAll(t, first, junkBatch("bob", 1, 0, 4)); !slices.Equal(r, []uint64{rnasp.Accepted, rnasp.Accepted, rnasp.Full, rnasp.Full}) {
		t.Errorf("quota 2: results %v", r)
	}
	first.Close()

	e.setConf("agentquota", "10")
	e.setConf("sessionsperaddr", "1")
	agentd.Process.Signal(syscall.SIGHUP)
	await(t, 5*time.Second, "agentd's settings line after SIGHUP", func() bool { return len(settings(-1)) == 2 })
	if s := settings(-1)[1]; !strings.Contains(s, " agentquota=10 ") || !strings.Contains(s, " sessionsperaddr=1 ") {
		t.Errorf("agentd's settings line after SIGHUP: %s", s)
	}
	held := dialFrom(t, "127.0.0.2", addr)
	if r := notifyAll(t, held, junkBatch("bob", 2, 0, 4)); !slices.Equal(r, []uint64{rnasp.Accepted, rnasp.Accepted, rnasp.Accepted, rnasp.Accepted}) {
		t.Errorf("quota 10 after SIGHUP: results %v", r)
	}
	// held is still open: a second session from 127.0.0.2 is over the new
	// sessionsperaddr, 1.
	if _, err := session.Expect[*rnasp.NotifyOK](dialFrom(t, "127.0.0.2", addr), junkBatch("bob", 3, 0, 1)); err == nil {
		t.Error("a second session from one address served after SIGHUP set sessionsperaddr to 1")
	}
	await(t, 5*time.Second, "agentd's log showing the new limit at work", func() bool {
		return strings.Contains(logs.String(), "info: reconfigured: RNASP: sessionsperaddr 1,") && strings.Contains(logs.String(), "warning: refused: RNASP 127.0.0.2:")
	})
	held.Close()
	// The sessions closed (their end logged), their slots are free.
	await(t, 5*time.Second, "the sessions' ends", func() bool { return strings.Count(logs.String(), "info: closed: RNASP 127.0.0.") == 3 })

	e.setConf("agentquota", "many")
	agentd.Process.Signal(syscall.SIGHUP)
	await(t, 5*time.Second, "agentd's warning for a setting that does not load", func() bool {
		return strings.Contains(logs.String(), "im2000-agentd: warning: SIGHUP: ") && strings.Contains(logs.String(), "agentquota: want a whole number")
	})
	if r := notifyAll(t, dialFrom(t, "127.0.0.1", addr), junkBatch("bob", 4, 0, 5)); !slices.Equal(r, []uint64{rnasp.Accepted, rnasp.Accepted, rnasp.Accepted, rnasp.Accepted, rnasp.Full}) {
		t.Errorf("after a SIGHUP that did not load, quota 10 (6 held): results %v", r)
	}

	// queryd the same: its settings line, and a new one on SIGHUP.
	qaddr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	queryd, qlogs := daemonEnv(t, vars, qaddr, filepath.Join(bin, "im2000-queryd"), "-l", qaddr)
	qsettings := func() []string {
		return regexp.MustCompile(`(?m)^im2000-queryd: info: settings: .*$`).FindAllString(qlogs.String(), -1)
	}
	await(t, 5*time.Second, "queryd's settings line", func() bool { return len(qsettings()) == 1 })
	if s := qsettings()[0]; !strings.Contains(s, " authdelay=250 ") || strings.Contains(s, "agentquota") {
		t.Errorf("queryd's settings line: %s", s)
	}
	e.setConf("authdelay", "7")
	queryd.Process.Signal(syscall.SIGHUP)
	await(t, 5*time.Second, "queryd's settings line after SIGHUP", func() bool { return len(qsettings()) == 2 })
	if s := qsettings()[1]; !strings.Contains(s, " authdelay=7 ") {
		t.Errorf("queryd's settings line after SIGHUP: %s", s)
	}
}

// TestSettingsSIGHUPStore: submitd and retrieved as listeners log their
// settings at start and put new ones in force on SIGHUP for the sessions
// that begin after it (submitd: a session begun before keeps the old
// minlifetime); settings that do not load leave those in force.
func TestSettingsSIGHUPStore(t *testing.T) {
	e := newEnv(t, "alice")
	writePasswords(t, e, "alice")
	addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	submitd, logs := daemonEnv(t, e.vars, addr, filepath.Join(bin, "im2000-submitd"), "-l", addr)
	settings := func() []string {
		return regexp.MustCompile(`(?m)^im2000-submitd: info: settings: .*$`).FindAllString(logs.String(), -1)
	}
	await(t, 5*time.Second, "submitd's settings line", func() bool { return len(settings()) == 1 })
	if s := settings()[0]; !strings.Contains(s, " minlifetime=3600 ") || !strings.Contains(s, " passwords=(set) ") || !strings.Contains(s, " sessionsperaddr=10 ") {
		t.Errorf("submitd's settings line: %s", s)
	}
	h := &storeHost{env: e, msoap: addr}
	env := &msoap.SubmitEnvelope{Lifetime: 86400, Recipients: []wire.MailBox{mb("bob", "example.net")}}
	before := login(t, h, "alice")
	e.setConf("minlifetime", "100000")
	submitd.Process.Signal(syscall.SIGHUP)
	await(t, 5*time.Second, "submitd's settings line after SIGHUP", func() bool { return len(settings()) == 2 })
	if s := settings()[1]; !strings.Contains(s, " minlifetime=100000 ") {
		t.Errorf("submitd's settings line after SIGHUP: %s", s)
	}
	call(t, login(t, h, "alice"), env, msoap.ErrorLifetimeTooShort, false)
	call(t, before, env, msoap.NoError, false) // began with the old settings

	e.setConf("minlifetime", "soon")
	submitd.Process.Signal(syscall.SIGHUP)
	await(t, 5*time.Second, "submitd's warning for a setting that does not load", func() bool {
		return strings.Contains(logs.String(), "im2000-submitd: warning: SIGHUP: ") && strings.Contains(logs.String(), "minlifetime: want a whole number")
	})
	if n := len(settings()); n != 2 {
		t.Errorf("a SIGHUP that did not load logged settings (%d lines)", n)
	}
	call(t, login(t, h, "alice"), env, msoap.ErrorLifetimeTooShort, false)

	// retrieved the same: its settings line, and a new one on SIGHUP.
	raddr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	retrieved, rlogs := daemonEnv(t, e.vars, raddr, filepath.Join(bin, "im2000-retrieved"), "-l", raddr)
	rsettings := func() []string {
		return regexp.MustCompile(`(?m)^im2000-retrieved: info: settings: .*$`).FindAllString(rlogs.String(), -1)
	}
	await(t, 5*time.Second, "retrieved's settings line", func() bool { return len(rsettings()) == 1 })
	if s := rsettings()[0]; !strings.Contains(s, " sessionsperaddr=10 ") || strings.Contains(s, "minlifetime") {
		t.Errorf("retrieved's settings line: %s", s)
	}
	e.setConf("sessionsperaddr", "3")
	retrieved.Process.Signal(syscall.SIGHUP)
	await(t, 5*time.Second, "retrieved's settings line after SIGHUP", func() bool { return len(rsettings()) == 2 })
	if s := rsettings()[1]; !strings.Contains(s, " sessionsperaddr=3 ") {
		t.Errorf("retrieved's settings line after SIGHUP: %s", s)
	}
	await(t, 5*time.Second, "retrieved's reconfiguration", func() bool {
		return strings.Contains(rlogs.String(), "im2000-retrieved: info: reconfigured: MSRAP: sessionsperaddr 3,")
	})
}
