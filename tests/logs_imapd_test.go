package tests

import (
	"bufio"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestIMAPSettingsSIGHUP: im2000-imapd -l logs the settings in force at
// start; SIGHUP reads them again for the sessions that begin after it
// (sessionsperaddr lowered to 1: a second session from the address is
// refused, logged), settings that do not load leave those in force with a
// warning, and SIGTERM ends it, logged.
func TestIMAPSettingsSIGHUP(t *testing.T) {
	e := newEnv(t, "alice")
	e.setConf("rna", "127.0.0.1:1") // never asked: nobody logs in
	e.setConf("imapstate", filepath.Join(t.TempDir(), "imap"))
	e.setConf("imappoll", "7")
	addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	imapd, logs := daemonEnv(t, e.vars, addr, filepath.Join(bin, "im2000-imapd"), "-l", addr)
	await(t, 5*time.Second, "imapd's settings line", func() bool { return len(settingsLines("im2000-imapd", logs)) == 1 })
	if s := settingsLines("im2000-imapd", logs)[0]; !strings.Contains(s, " imappoll=7 ") || !strings.Contains(s, " sessionsperaddr=") {
		t.Errorf("imapd's settings line: %s", s)
	}
	if !strings.Contains(logs.String(), "im2000-imapd: info: listening: "+addr+", at most ") {
		t.Errorf("no listening line:\n%s", logs.String())
	}
	// greeting opens a session and returns its first line.
	greeting := func() (net.Conn, string) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(10 * time.Second))
		line, _ := bufio.NewReader(c).ReadString('\n')
		return c, line
	}
	if _, g := greeting(); !strings.HasPrefix(g, "* OK") {
		t.Fatalf("greeting before SIGHUP: %q", g)
	}

	e.setConf("sessionsperaddr", "1")
	e.setConf("imappoll", "9")
	imapd.Process.Signal(syscall.SIGHUP)
	await(t, 5*time.Second, "imapd's settings line after SIGHUP", func() bool { return len(settingsLines("im2000-imapd", logs)) == 2 })
	if s := settingsLines("im2000-imapd", logs)[1]; !strings.Contains(s, " imappoll=9 ") || !strings.Contains(s, " sessionsperaddr=1 ") {
		t.Errorf("imapd's settings line after SIGHUP: %s", s)
	}
	if _, g := greeting(); strings.HasPrefix(g, "* OK") {
		t.Errorf("a second session from the address (one held) let in after sessionsperaddr became 1: %q", g)
	}
	await(t, 5*time.Second, "imapd's refused line", func() bool {
		return strings.Contains(logs.String(), "im2000-imapd: warning: refused: 127.0.0.1:")
	})

	e.setConf("imappoll", "often")
	imapd.Process.Signal(syscall.SIGHUP)
	await(t, 5*time.Second, "imapd's warning for a setting that does not load", func() bool {
		return strings.Contains(logs.String(), "im2000-imapd: warning: SIGHUP: ") && strings.Contains(logs.String(), "imappoll: want a whole number")
	})
	if n := len(settingsLines("im2000-imapd", logs)); n != 2 {
		t.Errorf("%d settings lines after a SIGHUP that did not load, want 2", n)
	}

	imapd.Process.Signal(syscall.SIGTERM)
	await(t, 5*time.Second, "imapd's shutdown line", func() bool {
		return strings.Contains(logs.String(), "im2000-imapd: info: shutting down: terminated")
	})
}
