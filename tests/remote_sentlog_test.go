package tests

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// remoteClient is a user's configuration on a host without the store:
// remote inject and status as account, with its sentlog setting.
func remoteClient(t *testing.T, h *storeHost, account, sentlog string) *env {
	cl := newEnv(t, account)
	os.Remove(cl.store)
	cl.vars = append(cl.vars[:0:0], "IM2000_CONF="+cl.conf, "IM2000_ACCOUNT="+account, "PATH="+os.Getenv("PATH"), "HOME="+t.TempDir(), "TZ=UTC")
	cl.setConf("remote", h.msoap)
	cl.setConf("password", account+"pw")
	cl.setConf("sentlog", sentlog)
	return cl
}

// remoteSMTPD starts im2000-smtpd for the store at h, recording in sentlog.
func remoteSMTPD(t *testing.T, h *storeHost, sentlog string) (host, port string, logs *syncBuffer) {
	e := newEnv(t, "nobody")
	os.Remove(e.store)
	e.setConf("remote", h.msoap)
	e.setConf("sentlog", sentlog)
	port = strconv.Itoa(freePort(t))
	_, logs = daemonEnv(t, e.vars, "127.0.0.1:"+port, filepath.Join(bin, "im2000-smtpd"), "-l", "127.0.0.1:"+port, "-c", "4")
	return "127.0.0.1", port, logs
}

var storedAs = regexp.MustCompile(`250 2\.0\.0 OK: stored in your archive as ([0-9a-f]{32})`)

// swaksAs submits one message with swaks, authenticated as account, and
// returns the identifier smtpd answered.
func swaksAs(t *testing.T, host, port, account, subject string) string {
	t.Helper()
	out, _ := exec.Command("swaks", "--server", host, "--port", port, "--auth", "PLAIN",
		"--auth-user", account, "--auth-password", account+"pw", "--from", account+"@example.org",
		"--to", "bob@example.net", "--h-Subject", subject).CombinedOutput()
	m := storedAs.FindSubmatch(out)
	if m == nil {
		t.Fatalf("swaks as %s:\n%s", account, out)
	}
	return string(m[1])
}

// listed runs the remote im2000-status and returns the ids it lists.
func listed(t *testing.T, cl *env) []string {
	t.Helper()
	r := cl.run("", "im2000-status")
	if r.code != 0 {
		t.Fatalf("im2000-status: exit %d, %s", r.code, r.stderr)
	}
	var ids []string
	for _, l := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		if id, _, ok := strings.Cut(l, "\t"); ok {
			ids = append(ids, id)
		}
	}
	return ids
}

// TestSentLogSMTPRemote (issue 17): a shared im2000-smtpd in remote mode
// records what it stores for each account in that account's sent log
// (sentlog with %a), so each user's remote im2000-status lists the
// messages they sent over SMTP along with those they injected, and not
// another's; --queue and --cancel work on them. An smtpd whose sentlog is
// one file (one run as a user) writes every account's lines there, and
// the owner's im2000-status lists only its own.
func TestSentLogSMTPRemote(t *testing.T) {
	if _, err := exec.LookPath("swaks"); err != nil {
		t.Fatal("swaks is not installed: run tests/deps.sh")
	}
	h := newStoreHost(t, "tcpserver", nil)
	dir := t.TempDir()
	shared := filepath.Join(dir, "%a")
	host, port, logs := remoteSMTPD(t, h, shared)
	alice := remoteClient(t, h, "alice", shared)
	bob := remoteClient(t, h, "bob", shared)

	aInjected := alice.inject("Subject: injected\n\nx\n", "carol@example.com")
	aSMTP := swaksAs(t, host, port, "alice", "alice over smtp")
	bSMTP := swaksAs(t, host, port, "bob", "bob over smtp")
	for _, f := range []struct{ file, want string }{{"alice", "\talice\talice over smtp\n"}, {"bob", bSMTP + "\t"}} {
		b, err := os.ReadFile(filepath.Join(dir, f.file))
		if err != nil || !strings.Contains(string(b), f.want) {
			t.Errorf("sent log %s: %v %q", f.file, err, b)
		}
	}
	if got := listed(t, alice); strings.Join(got, " ") != aInjected+" "+aSMTP {
		t.Errorf("alice's remote listing: %v, want %s %s", got, aInjected, aSMTP)
	}
	if got := listed(t, bob); strings.Join(got, " ") != bSMTP {
		t.Errorf("bob's remote listing: %v, want %s", got, bSMTP)
	}
	r := alice.run("", "im2000-status", aSMTP)
	if r.code != 0 || !strings.Contains(r.stdout, "bob@example.net\tunprocessed") {
		t.Errorf("alice's view of her SMTP message: exit %d %q %s", r.code, r.stdout, r.stderr)
	}
	if q := queueSummary(t, alice); q.Messages != 2 || q.Recipients != 2 || q.Oldest == nil || q.Oldest.ID != aInjected {
		t.Errorf("alice's remote --queue: %+v", q)
	}
	if r := bob.run("", "im2000-status", "--cancel", aSMTP); r.code != 100 || !strings.Contains(r.stderr, "no such message") {
		t.Errorf("bob cancels alice's message: exit %d %q", r.code, r.stderr)
	}
	if r := alice.run("", "im2000-status", "--cancel", aSMTP); r.code != 0 || r.stdout != "cancelled "+aSMTP+"\n" {
		t.Fatalf("alice's remote --cancel of her SMTP message: exit %d %q %s", r.code, r.stdout, r.stderr)
	}
	if got := listed(t, alice); strings.Join(got, " ") != aInjected {
		t.Errorf("alice's listing after the cancel: %v", got)
	}
	if q := queueSummary(t, alice); q.Messages != 1 {
		t.Errorf("alice's --queue after the cancel: %+v", q)
	}
	if q := queueSummary(t, bob); q.Messages != 1 || q.Oldest == nil || q.Oldest.ID != bSMTP {
		t.Errorf("bob's remote --queue: %+v", q)
	}

	// One file for every account: the owner (alice) sees hers only.
	one := filepath.Join(t.TempDir(), "sent")
	host, port, _ = remoteSMTPD(t, h, one)
	alice.setConf("sentlog", one)
	a2, b2 := swaksAs(t, host, port, "alice", "one file"), swaksAs(t, host, port, "bob", "one file")
	if got := listed(t, alice); strings.Join(got, " ") != a2 {
		t.Errorf("alice's listing of the one file holding bob's %s too: %v, want %s", b2, got, a2)
	}
	// Track refuses bob's messages to alice anyway; what hides a line that
	// is not hers is the account it names, even for an id she may track.
	f, err := os.OpenFile(one, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(a2 + "\t1800000000\tbob\tbob's line\n")
	f.Close()
	if got := listed(t, alice); strings.Join(got, " ") != a2 {
		t.Errorf("alice's listing with a line of bob's naming her %s: %v", a2, got)
	}
	// A forged line of hers with the same id: listed once, as first written.
	f, _ = os.OpenFile(one, os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString(a2 + "	1800000000	alice	forged\n")
	f.Close()
	if r := alice.run("", "im2000-status"); r.code != 0 || strings.Count(r.stdout, a2) != 1 || strings.Contains(r.stdout, "forged") {
		t.Errorf("alice's listing with her id twice: exit %d %q", r.code, r.stdout)
	}

	// A log that cannot be written: the message is stored all the same,
	// and the warning says so, in smtpd's log and inject's.
	host, port, logs = remoteSMTPD(t, h, filepath.Join(dir, "missing", "%a"))
	lost := swaksAs(t, host, port, "alice", "not recorded")
	waitFor(t, func() bool { return strings.Contains(logs.String(), "warning: not recorded: ") })
	if l := logs.String(); !strings.Contains(l, "alice: "+lost+" is stored at the remote store") {
		t.Errorf("smtpd's log: %s", l)
	}
	alice.setConf("sentlog", filepath.Join(dir, "missing", "%a"))
	r = alice.run("Subject: x\n\nx\n", "im2000-inject", "bob@example.net")
	if r.code != 0 || !strings.HasPrefix(r.stderr, "im2000-inject: warning: not recorded: ") {
		t.Errorf("inject with a sent log it cannot write: exit %d %q", r.code, r.stderr)
	}
	if r := alice.run("", "im2000-status", lost); r.code != 0 {
		t.Errorf("the unrecorded message by its id: exit %d %s", r.code, r.stderr)
	}
}

// waitFor polls cond for up to 10 seconds.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
	}
}

// TestSentLogRefused (review of issue 17): with the shared setup
// (sentlog /home/%a/.im2000-sent) a user who makes her log a symbolic link
// to a file smtpd may write gets nothing written there: the message is
// stored and "warning: not recorded:" says why, in smtpd's log and
// inject's; and a list post (nobody to notify) resent remotely says so.
func TestSentLogRefused(t *testing.T) {
	if _, err := exec.LookPath("swaks"); err != nil {
		t.Fatal("swaks is not installed: run tests/deps.sh")
	}
	h := newStoreHost(t, "tcpserver", nil)
	dir := t.TempDir()
	profile := filepath.Join(dir, "profile")
	os.WriteFile(profile, []byte("# smtpd's user's profile\n"), 0o644)
	if err := os.Symlink(profile, filepath.Join(dir, "alice")); err != nil {
		t.Fatal(err)
	}
	host, port, logs := remoteSMTPD(t, h, filepath.Join(dir, "%a"))
	id := swaksAs(t, host, port, "alice", "x ; echo PWNED")
	waitFor(t, func() bool { return strings.Contains(logs.String(), "warning: not recorded: ") })
	if l := logs.String(); !strings.Contains(l, id) || !strings.Contains(l, "symbolic link") {
		t.Errorf("smtpd's log: %s", l)
	}
	alice := remoteClient(t, h, "alice", filepath.Join(dir, "%a"))
	r := alice.run("Subject: x ; echo PWNED\n\nx\n", "im2000-inject", "bob@example.net")
	if r.code != 0 || !strings.HasPrefix(r.stderr, "im2000-inject: warning: not recorded: ") || !strings.Contains(r.stderr, "symbolic link") {
		t.Errorf("inject with its sent log a symbolic link: exit %d %q", r.code, r.stderr)
	}
	if b, _ := os.ReadFile(profile); string(b) != "# smtpd's user's profile\n" {
		t.Errorf("the link's target became %q", b)
	}
	if r := alice.run("", "im2000-status", id); r.code != 0 {
		t.Errorf("the message by its id: exit %d %s", r.code, r.stderr)
	}

	// A post to a list only: nobody to notify, said as such.
	alice.setConf("sentlog", filepath.Join(t.TempDir(), "sent"))
	post := alice.inject("Subject: to the list\n\nnews\n", "-l", "news")
	if r := alice.run("", "im2000-status", "--resend", post); r.code != 100 || !strings.Contains(r.stderr, "the message went to lists only") {
		t.Errorf("remote --resend of a list post: exit %d %q", r.code, r.stderr)
	}

	// No HOME and no sentlog (daemontools): not ./.im2000-sent, a warning
	// for inject, a clear failure for status.
	os.Remove(filepath.Join(alice.conf, "sentlog"))
	var noHome []string
	for _, v := range alice.vars {
		if !strings.HasPrefix(v, "HOME=") {
			noHome = append(noHome, v)
		}
	}
	alice.vars = noHome
	r = alice.run("Subject: x\n\nx\n", "im2000-inject", "bob@example.net")
	if r.code != 0 || !strings.Contains(r.stderr, "warning: not recorded: ") || !strings.Contains(r.stderr, "set sentlog") {
		t.Errorf("inject without HOME or sentlog: exit %d %q", r.code, r.stderr)
	}
	if r := alice.run("", "im2000-status"); r.code != 111 || !strings.Contains(r.stderr, "set sentlog") {
		t.Errorf("status without HOME or sentlog: exit %d %q", r.code, r.stderr)
	}
}

// TestSentLogModes: a sent log of mode 620, owned by the user and
// writable by the writer's group, is enough to append to (the writer may
// not read it); a reader that may not read its log is told to have the
// admin mend it. Needs root, to run the programs as another user.
func TestSentLogModes(t *testing.T) {
	uid, gid := otherUser(t)
	h := newStoreHost(t, "tcpserver", nil)
	alice := remoteClient(t, h, "alice", "")
	log := filepath.Join(t.TempDir(), "alice")
	alice.setConf("sentlog", log)
	if err := os.WriteFile(log, nil, 0o620); err != nil {
		t.Fatal(err)
	}
	os.Chmod(log, 0o620)
	os.Chown(log, 0, gid) // the user's (root here), the writer's group
	for _, p := range []string{alice.conf, filepath.Dir(log)} {
		for d := p; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
			os.Chmod(d, 0o755)
		}
	}
	os.Chmod(filepath.Join(alice.conf, "password"), 0o644)
	os.Chmod(bin, 0o755) // the programs, built in a directory of mode 700
	as := func(stdin, prog string, args ...string) (code int, stdout, stderr string) {
		cmd := exec.Command(filepath.Join(bin, prog), args...)
		cmd.Env = alice.vars
		cmd.Stdin = strings.NewReader(stdin)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			x, ok := err.(*exec.ExitError)
			if !ok {
				t.Fatalf("%s as %s: %v", prog, otherName, err)
			}
			code = x.ExitCode()
		}
		return code, out.String(), errb.String()
	}
	code, out, stderr := as("Subject: mode 620\n\nx\n", "im2000-inject", "bob@example.net")
	id := strings.TrimSpace(out)
	if code != 0 || stderr != "" {
		t.Fatalf("inject appending to a log of mode 620: exit %d %q", code, stderr)
	}
	if b, _ := os.ReadFile(log); !strings.HasPrefix(string(b), id+"\t") || !strings.Contains(string(b), "\talice\tmode 620\n") {
		t.Errorf("the log: %q", b)
	}
	code, _, stderr = as("", "im2000-status")
	if code != 111 || !strings.Contains(stderr, "im2000-status: sent log "+log+": permission denied: have the admin make it readable by you") {
		t.Errorf("status with a log it may not read: exit %d %q", code, stderr)
	}
}

// TestSentLogExpiry (issue 17): MSOAP Track tells no expiry, so the sent
// log records the lifetime asked (inject's and smtpd's lifetime setting)
// and remote im2000-status shows submitted plus it, marked as asked ("*",
// expires_asked): in the listing, the message's view and --queue's oldest.
// Lines of both older forms show the expiry as unknown.
func TestSentLogExpiry(t *testing.T) {
	if _, err := exec.LookPath("swaks"); err != nil {
		t.Fatal("swaks is not installed: run tests/deps.sh")
	}
	h := newStoreHost(t, "tcpserver", nil)
	log := filepath.Join(t.TempDir(), "sent")
	host, port, _ := remoteSMTPD(t, h, log) // lifetime: the default, 30 days
	alice := remoteClient(t, h, "alice", log)
	alice.setConf("lifetime", "864000") // 10 days
	injected := alice.inject("Subject: injected\n\nx\n", "carol@example.com")
	smtp := swaksAs(t, host, port, "alice", "over smtp")
	life := map[string]time.Duration{injected: 10 * 24 * time.Hour, smtp: 30 * 24 * time.Hour}

	type row struct {
		ID, Subject        string
		Submitted, Expires time.Time
		ExpiresAsked       bool `json:"expires_asked"`
	}
	check := func(old map[string]bool) {
		t.Helper()
		var rows []row
		if r := alice.run("", "im2000-status", "--json"); r.code != 0 || json.Unmarshal([]byte(r.stdout), &rows) != nil || len(rows) != len(life)+len(old) {
			t.Fatalf("--json: exit %d %q %s", r.code, r.stdout, r.stderr)
		}
		text := alice.run("", "im2000-status").stdout
		for _, m := range rows {
			want, exp := "-", m.Submitted.Add(life[m.ID])
			if !old[m.ID] {
				want = exp.UTC().Format(time.RFC3339) + "*"
				if !m.ExpiresAsked || !m.Expires.Equal(exp) {
					t.Errorf("--json of %s (%s): %+v, want expires %v asked", m.ID, m.Subject, m, exp)
				}
			} else if m.ExpiresAsked || !m.Expires.IsZero() {
				t.Errorf("--json of an older line %s: %+v", m.ID, m)
			}
			if i := strings.Index(text, m.ID+"\t"); i < 0 || !strings.HasSuffix(strings.SplitN(text[i:], "\n", 2)[0], "\t"+want) {
				t.Errorf("listing of %s: want expires %s in %q", m.ID, want, text)
			}
			if r := alice.run("", "im2000-status", m.ID); !strings.HasSuffix(r.stdout, "expires\t"+want+"\n") {
				t.Errorf("view of %s: %q, want expires %s", m.ID, r.stdout, want)
			}
		}
	}
	check(nil)
	q := queueSummary(t, alice)
	var sub time.Time
	if r := alice.run("", "im2000-status", "--queue"); q.Oldest == nil || q.Oldest.ID != injected ||
		!strings.Contains(r.stdout, "oldest\t"+injected+"\tsubmitted\t") {
		t.Fatalf("--queue: %+v %q", q, r.stdout)
	} else {
		f := strings.Split(strings.Split(r.stdout[strings.Index(r.stdout, "oldest\t"):], "\n")[0], "\t")
		sub, _ = time.Parse(time.RFC3339, f[3])
		if exp := sub.Add(life[injected]); f[5] != exp.Format(time.RFC3339)+"*" || !q.Oldest.Expires.Equal(exp) {
			t.Errorf("--queue's oldest expires %q (JSON %v), want %v asked", f[5], q.Oldest.Expires, exp)
		}
	}

	// Older lines, earlier than both: the expiry unknown, in --queue too.
	other := remoteClient(t, h, "alice", filepath.Join(t.TempDir(), "other"))
	older, oldest := other.inject("Subject: a\n\na\n", "bob@example.net"), other.inject("Subject: b\n\nb\n", "bob@example.net")
	f, err := os.OpenFile(log, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "%s\t%d\talice\tolder form\n%s %d oldest form\n", older, sub.Unix()-60, oldest, sub.Unix()-120)
	f.Close()
	check(map[string]bool{older: true, oldest: true})
	if r := alice.run("", "im2000-status", "--queue"); !strings.Contains(r.stdout, "oldest\t"+oldest+"\tsubmitted\t") || !strings.Contains(r.stdout, "\texpires\t-\n") {
		t.Errorf("--queue with an oldest-form line oldest: %q", r.stdout)
	}
	if q := queueSummary(t, alice); q.Oldest == nil || q.Oldest.ID != oldest || !q.Oldest.Expires.IsZero() {
		t.Errorf("--queue --json with an oldest-form line oldest: %+v", q)
	}
}
