package tests

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestIMAPClients reads IM2000 mail with the IMAP clients people use:
// mutt over imap:// shows the index (readheaders), displays the first
// message (readall) and deletes it (silenced); mbsync pulls the rest into
// a Maildir (readall), and propagates a message deleted there
// (silenced); fetchmail takes what is left and deletes it at the server
// (silenced). Alice's store is checked after each.
func TestIMAPClients(t *testing.T) {
	var bodies []string
	for i := range 5 {
		bodies = append(bodies, fmt.Sprintf("Subject: message %d\n\nbody of message %d\n", i+1, i+1))
	}
	d := newIMAPDeployment(t, bodies...)
	states := func() []string {
		var out []string
		for i := range d.ids {
			out = append(out, d.status(t, i))
		}
		return out
	}
	want := func(step string, w ...string) {
		t.Helper()
		if got := states(); strings.Join(got, " ") != strings.Join(w, " ") {
			t.Fatalf("after %s: alice's store says %q, want %q", step, got, w)
		}
	}

	// mutt, in a tmux pane: the index, then message 1, deleted.
	for _, tool := range []string{"mutt", "tmux", "mbsync", "fetchmail"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed: run tests/deps.sh", tool)
		}
	}
	home := t.TempDir()
	muttrc := filepath.Join(home, "muttrc")
	os.WriteFile(muttrc, []byte(`set imap_user=bob
set imap_pass=bobpw
set ssl_starttls=no
set ssl_force_tls=no
set folder=imap://127.0.0.1:`+d.port+`/
set spoolfile=+INBOX
set sort=date-sent
set delete=yes
set quit=yes
set confirmappend=no
set mail_check=1
set imap_keepalive=30
set header_cache=""
set message_cachedir=""
`), 0o600)
	// A tmux server of the test's own (-L, no configuration), so that a
	// tmux the machine already runs, with its own environment and
	// settings, plays no part; the pane stays after mutt exits, so that
	// what mutt last showed can be reported.
	sock := fmt.Sprintf("im2000-imap%d", time.Now().UnixNano())
	tmux := func(args ...string) *exec.Cmd {
		return exec.Command("tmux", append([]string{"-L", sock, "-f", "/dev/null"}, args...)...)
	}
	mutt := fmt.Sprintf("HOME=%s TERM=xterm mutt -n -F %s -e 'push \"<first-entry><display-message><exit><delete-message><sync-mailbox><quit>\"'; echo mutt exited $?; sleep 600", home, muttrc)
	if out, err := tmux("new-session", "-d", "-s", "mutt", "-x", "120", "-y", "40", mutt).CombinedOutput(); err != nil {
		t.Fatalf("tmux: %v %s", err, out)
	}
	pane := func() string {
		out, _ := tmux("capture-pane", "-p", "-t", "mutt").CombinedOutput()
		return string(out)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("mutt's screen:\n%s", pane())
		}
		tmux("kill-server").Run()
	})
	await(t, 60*time.Second, "mutt to delete message 1", func() bool { return d.status(t, 0) == "silenced/readall" })
	await(t, 10*time.Second, "mutt to quit", func() bool { return strings.Contains(pane(), "mutt exited") })
	if !strings.Contains(pane(), "mutt exited 0") {
		t.Fatalf("mutt failed:\n%s", pane())
	}
	want("mutt", "silenced/readall", "notifying/readheaders", "notifying/readheaders", "notifying/readheaders", "notifying/readheaders")

	// mbsync pulls INBOX into a Maildir.
	maildir := filepath.Join(home, "Mail")
	rc := filepath.Join(home, "mbsyncrc")
	writeRC := func(sync, expunge string) {
		os.WriteFile(rc, []byte(`IMAPAccount bob
Host 127.0.0.1
Port `+d.port+`
User bob
Pass bobpw
SSLType None
AuthMechs LOGIN

IMAPStore remote
Account bob

MaildirStore local
Path `+maildir+`/
Inbox `+maildir+`/INBOX

Channel inbox
Far :remote:INBOX
Near :local:INBOX
Create Near
Sync `+sync+`
Expunge `+expunge+`
SyncState *
`), 0o600)
	}
	os.MkdirAll(maildir, 0o700)
	writeRC("Pull", "None")
	if out, err := exec.Command("mbsync", "-c", rc, "-a").CombinedOutput(); err != nil {
		t.Fatalf("mbsync: %v\n%s", err, out)
	}
	files, _ := filepath.Glob(filepath.Join(maildir, "INBOX", "*", "*"))
	if len(files) != 4 {
		t.Fatalf("mbsync's Maildir: %q", files)
	}
	want("mbsync", "silenced/readall", "notifying/readall", "notifying/readall", "notifying/readall", "notifying/readall")

	// A message deleted in the Maildir is deleted at the server, and
	// silenced, by the next mbsync.
	var gone string
	for _, f := range files {
		if b, _ := os.ReadFile(f); strings.Contains(string(b), "Subject: message 2") {
			gone = f
		}
	}
	if gone == "" {
		t.Fatalf("message 2 is not in mbsync's Maildir: %q", files)
	}
	os.Remove(gone)
	writeRC("All", "Both")
	if out, err := exec.Command("mbsync", "-c", rc, "-a").CombinedOutput(); err != nil {
		t.Fatalf("mbsync, second run: %v\n%s", err, out)
	}
	want("mbsync's expunge", "silenced/readall", "silenced/readall", "notifying/readall", "notifying/readall", "notifying/readall")

	// fetchmail takes the rest, and deletes it at the server.
	out := filepath.Join(home, "fetched")
	os.Mkdir(out, 0o700)
	fmrc := filepath.Join(home, "fetchmailrc")
	os.WriteFile(fmrc, []byte(fmt.Sprintf(`poll 127.0.0.1 service %s protocol IMAP
  user bob password bobpw is bob here
  no keep
  sslproto ''
  mda "/bin/sh -c 'cat > %s/$$.$(date +%%s%%N)'"
`, d.port, out)), 0o600)
	fm := exec.Command("fetchmail", "-f", fmrc, "--nosyslog", "-v")
	fm.Env = append(os.Environ(), "HOME="+home, "FETCHMAILHOME="+home)
	if o, err := fm.CombinedOutput(); err != nil {
		t.Fatalf("fetchmail: %v\n%s", err, o)
	}
	got, _ := os.ReadDir(out)
	if len(got) != 3 {
		t.Fatalf("fetchmail delivered %d messages, want 3", len(got))
	}
	want("fetchmail", "silenced/readall", "silenced/readall", "silenced/readall", "silenced/readall", "silenced/readall")
}
