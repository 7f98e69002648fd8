// Settings reloaded on SIGHUP: agentd, queryd, submitd and retrieved as
// listeners log the settings in force and put new ones in force for the
// sessions that begin later.

package tests

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"im2000/lib/session"
	"im2000/lib/wire"
	"im2000/lib/wire/msoap"
	"im2000/lib/wire/rnasp"
)

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
