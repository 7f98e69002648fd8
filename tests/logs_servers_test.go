package tests

import (
	"net"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// settingsLines returns the "info: settings:" lines prog logged so far.
func settingsLines(prog string, logs *syncBuffer) []string {
	return regexp.MustCompile(`(?m)^`+prog+`: info: settings: .*$`).FindAllString(logs.String(), -1)
}

// TestSMTPSettingsSIGHUP: im2000-smtpd -l logs the settings in force at
// start; SIGHUP reads them again for the sessions that begin after it
// (databytes, which go-smtp announces as SIZE), while a session begun
// before keeps its own; settings that do not load leave those in force,
// with a warning; SIGTERM closes the sessions, logged.
func TestSMTPSettingsSIGHUP(t *testing.T) {
	e := newEnv(t, "alice")
	writePasswords(t, e, "alice")
	e.setConf("databytes", "100000")
	addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	smtpd, logs := daemonEnv(t, e.vars, addr, filepath.Join(bin, "im2000-smtpd"), "-l", addr)
	await(t, 5*time.Second, "smtpd's settings line", func() bool { return len(settingsLines("im2000-smtpd", logs)) == 1 })
	if s := settingsLines("im2000-smtpd", logs)[0]; !strings.Contains(s, " databytes=100000 ") || !strings.Contains(s, " sessionsperaddr=") {
		t.Errorf("smtpd's settings line: %s", s)
	}
	if !strings.Contains(logs.String(), "im2000-smtpd: info: listening: "+addr+", at most 40 SMTP sessions") {
		t.Errorf("no listening line:\n%s", logs.String())
	}
	ehlo := func(s *lines) string {
		s.send("EHLO client.example")
		return s.smtp()
	}
	session := func() *lines {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		s := newLines(t, c)
		s.smtp()
		return s
	}
	old := session()
	if r := ehlo(old); !strings.Contains(r, "SIZE 100000\n") {
		t.Fatalf("EHLO before SIGHUP:\n%s", r)
	}

	e.setConf("databytes", "5000")
	smtpd.Process.Signal(syscall.SIGHUP)
	await(t, 5*time.Second, "smtpd's settings line after SIGHUP", func() bool { return len(settingsLines("im2000-smtpd", logs)) == 2 })
	if s := settingsLines("im2000-smtpd", logs)[1]; !strings.Contains(s, " databytes=5000 ") {
		t.Errorf("smtpd's settings line after SIGHUP: %s", s)
	}
	if r := ehlo(session()); !strings.Contains(r, "SIZE 5000\n") {
		t.Errorf("EHLO of a session begun after SIGHUP:\n%s", r)
	}
	if r := ehlo(old); !strings.Contains(r, "SIZE 100000\n") {
		t.Errorf("EHLO of the session begun before SIGHUP:\n%s", r)
	}

	e.setConf("databytes", "many")
	smtpd.Process.Signal(syscall.SIGHUP)
	await(t, 5*time.Second, "smtpd's warning for a setting that does not load", func() bool {
		return strings.Contains(logs.String(), "im2000-smtpd: warning: SIGHUP: ") && strings.Contains(logs.String(), "databytes: want a whole number")
	})
	if r := ehlo(session()); !strings.Contains(r, "SIZE 5000\n") {
		t.Errorf("EHLO after a SIGHUP that did not load:\n%s", r)
	}
	if n := len(settingsLines("im2000-smtpd", logs)); n != 2 {
		t.Errorf("%d settings lines after a SIGHUP that did not load, want 2", n)
	}

	// SIGTERM closes every session, of every generation.
	smtpd.Process.Signal(syscall.SIGTERM)
	await(t, 5*time.Second, "smtpd's shutdown line", func() bool {
		return strings.Contains(logs.String(), "im2000-smtpd: info: shutting down: terminated")
	})
	old.c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := old.r.ReadString('\n'); err == nil {
		t.Error("the session begun before SIGHUP still open after SIGTERM")
	}
}

// TestPOP3SettingsSIGHUP: im2000-pop3d -l logs the settings in force at
// start and after each SIGHUP that loaded; the new ones hold for the
// sessions that begin after it (sessionsperaddr); settings that do not
// load leave those in force, with a warning.
func TestPOP3SettingsSIGHUP(t *testing.T) {
	e := newEnv(t, "bob")
	e.setConf("rna", "127.0.0.1:1") // no login here: the agent is never asked
	e.setConf("pop3state", t.TempDir())
	e.setConf("sessionsperaddr", "5")
	addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	pop3d, logs := daemonEnv(t, e.vars, addr, filepath.Join(bin, "im2000-pop3d"), "-l", addr)
	await(t, 5*time.Second, "pop3d's settings line", func() bool { return len(settingsLines("im2000-pop3d", logs)) == 1 })
	if s := settingsLines("im2000-pop3d", logs)[0]; !strings.Contains(s, " sessionsperaddr=5 ") || !strings.Contains(s, ` rna="127.0.0.1:1" `) {
		t.Errorf("pop3d's settings line: %s", s)
	}
	if !strings.Contains(logs.String(), "im2000-pop3d: info: listening: "+addr+", at most 40 POP3 sessions") {
		t.Errorf("no listening line:\n%s", logs.String())
	}
	greeting := func() string {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return newLines(t, c).line()
	}
	for i := 0; i < 2; i++ {
		if g := greeting(); !strings.HasPrefix(g, "+OK") {
			t.Fatalf("session %d with sessionsperaddr 5: %q", i, g)
		}
	}

	e.setConf("sessionsperaddr", "1")
	pop3d.Process.Signal(syscall.SIGHUP)
	await(t, 5*time.Second, "pop3d's settings line after SIGHUP", func() bool { return len(settingsLines("im2000-pop3d", logs)) == 2 })
	if s := settingsLines("im2000-pop3d", logs)[1]; !strings.Contains(s, " sessionsperaddr=1 ") {
		t.Errorf("pop3d's settings line after SIGHUP: %s", s)
	}
	if g := greeting(); !strings.HasPrefix(g, "-ERR [SYS/TEMP] too many sessions from your address") {
		t.Errorf("a third session with 2 held and sessionsperaddr 1 after SIGHUP: %q", g)
	}
	await(t, 5*time.Second, "the refusal logged", func() bool {
		return strings.Contains(logs.String(), "im2000-pop3d: warning: refused: 127.0.0.1:")
	})

	e.setConf("sessionsperaddr", "many")
	pop3d.Process.Signal(syscall.SIGHUP)
	await(t, 5*time.Second, "pop3d's warning for a setting that does not load", func() bool {
		return strings.Contains(logs.String(), "im2000-pop3d: warning: SIGHUP: ") && strings.Contains(logs.String(), "sessionsperaddr: want a whole number")
	})
	if g := greeting(); !strings.HasPrefix(g, "-ERR [SYS/TEMP] too many sessions from your address") {
		t.Errorf("after a SIGHUP that did not load, sessionsperaddr 1 still: %q", g)
	}
	if n := len(settingsLines("im2000-pop3d", logs)); n != 2 {
		t.Errorf("%d settings lines after a SIGHUP that did not load, want 2", n)
	}
}
