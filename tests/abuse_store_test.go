package tests

import (
	"bytes"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"im2000/lib/msgid"
	"im2000/lib/store"
	"im2000/lib/wire"
	"im2000/lib/wire/msoap"
	"im2000/lib/wire/msrap"
)

// storeLogs is everything the store's servers logged so far.
func storeLogs(h *storeHost) string {
	var b strings.Builder
	for _, l := range h.logs {
		b.WriteString(l.String())
	}
	return b.String()
}

// envelopeOf reads a committed message's envelope from the store.
func envelopeOf(t *testing.T, h *storeHost, id msgid.ID) *store.Envelope {
	t.Helper()
	env, _ := readMessage(t, h.env, "alice", id.String())
	return env
}

// TestEnvelopeCollapse: an MSOAP envelope naming bob 2,000 times (in two
// spellings) makes one recipient, every entry acceptable; with more
// distinct recipients than maxrcpt (100 by default, smtpd's setting), the
// ones past it are refused and left out.
func TestEnvelopeCollapse(t *testing.T) {
	h := newStoreHost(t, "tcpserver", nil)
	c := login(t, h, "alice")
	env := &msoap.SubmitEnvelope{Lifetime: 86400}
	for i := range 2000 {
		local := "bob"
		if i%2 == 1 {
			local = "BOB"
		}
		env.Recipients = append(env.Recipients, mb(local, "example.net"))
	}
	r := call(t, c, env, msoap.NoError, false).Response.(*msoap.SubmitEnvelopeOK)
	for i, st := range r.Recipients {
		if st != msoap.Acceptable {
			t.Fatalf("entry %d answered %d", i, st)
		}
	}
	first := call(t, c, &msoap.SubmitMsgChunk{IsLast: true, Data: []byte(testMessage)}, msoap.NoError, false).Response.(*msoap.SubmitMsgChunkOK).ID
	if first == nil {
		t.Fatal("no identifier")
	}
	if e := envelopeOf(t, h, *first); len(e.Recipients) != 1 || e.Recipients[0].Addr.Local != "bob" {
		t.Fatalf("the envelope has %d recipients: %v", len(e.Recipients), e.Recipients)
	}
	if n := len(statusOf(t, c, *first)); n != 1 {
		t.Fatalf("Track shows %d recipients", n)
	}

	env = &msoap.SubmitEnvelope{Lifetime: 86400}
	for i := range 150 {
		env.Recipients = append(env.Recipients, mb("r"+strconv.Itoa(i), "example.net"))
	}
	env.Recipients = append(env.Recipients, mb("R0", "example.net")) // a duplicate past the cap
	id := submit(t, c, []byte(testMessage), 1<<16, env)
	e := envelopeOf(t, h, id)
	if len(e.Recipients) != store.DefaultMaxRcpt || e.Recipients[99].Addr.Local != "r99" {
		t.Fatalf("%d recipients kept, want the first %d", len(e.Recipients), store.DefaultMaxRcpt)
	}
	c2 := login(t, h, "alice")
	r = call(t, c2, env, msoap.NoError, false).Response.(*msoap.SubmitEnvelopeOK)
	for i, st := range r.Recipients {
		if want := i < 100 || i == 150; (st == msoap.Acceptable) != want {
			t.Fatalf("entry %d (%s) answered %d", i, env.Recipients[i].Local, st)
		}
	}
	if !regexp.MustCompile(`(?m)^im2000-submitd: warning: envelope cut: 127\.0\.0\.1:\d+: alice: an envelope of \d+ recipients: \d+ distinct kept, 50 over maxrcpt \(100\) refused$`).MatchString(storeLogs(h)) {
		t.Errorf("no log line for the recipients over maxrcpt")
	}
}

// fillDisk writes a file in dir until the filesystem is full, and returns
// a function that removes it.
func fillDisk(t *testing.T, dir string) func() {
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	block := make([]byte, 4096)
	for {
		if _, err := f.Write(block); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	f.Close()
	// Also the last few blocks a small write could still find.
	for i := 0; ; i++ {
		if os.WriteFile(filepath.Join(dir, "filler"+strconv.Itoa(i)), []byte("x"), 0o600) != nil {
			break
		}
	}
	return func() {
		matches, _ := filepath.Glob(filepath.Join(dir, "filler*"))
		for _, m := range matches {
			os.Remove(m)
		}
	}
}

// TestRetrieveDiskFull: with the store's disk full (a 2 MiB tmpfs filled
// to the last block), recipients still retrieve the whole message, and a
// list reader the list message; the read status that could not be written
// is logged, and recorded once there is room: bob's by the next command of
// his session, carol's by the end of hers (Abort's retry).
func TestRetrieveDiskFull(t *testing.T) {
	for _, mode := range []string{"tcpserver", "listener"} {
		t.Run(mode, func(t *testing.T) {
			h := newStoreHost(t, mode, func(e *env) { mountTmpfs(t, e.store, "2m") })
			c := login(t, h, "alice")
			msg := []byte(testMessage + strings.Repeat("body line\r\n", 2000))
			id := submit(t, c, msg, 1<<15, &msoap.SubmitEnvelope{Recipients: []wire.MailBox{mb("bob", "example.net"), mb("carol", "example.com")}, Lists: [][]byte{[]byte("news")}, Lifetime: 86400})
			e := envelopeOf(t, h, id)
			if len(e.Recipients) != 2 {
				t.Fatalf("%d recipients", len(e.Recipients))
			}
			free := fillDisk(t, h.store)
			defer free()
			if err := os.WriteFile(filepath.Join(h.store, "probe"), []byte("x"), 0o600); !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("the disk is not full: %v", err)
			}

			r := dialProto(t, msrap.Protocol, h.msrap)
			if got := retrieveAll(t, r, e.Recipients[0].ID, msrap.All, 0); !bytes.Equal(got, msg) {
				t.Fatalf("bob retrieved %d octets, want the message's %d", len(got), len(msg))
			}
			r2 := dialProto(t, msrap.Protocol, h.msrap)
			if got := retrieveAll(t, r2, e.Recipients[1].ID, msrap.All, 0); !bytes.Equal(got, msg) {
				t.Fatalf("carol retrieved %d octets", len(got))
			}
			if got := retrieveAll(t, dialProto(t, msrap.Protocol, h.msrap), e.Lists[0].ID, msrap.All, 0); !bytes.Equal(got, msg) {
				t.Fatalf("the list reader retrieved %d octets", len(got))
			}
			await(t, 5e9, "the log lines", func() bool {
				return strings.Count(storeLogs(h), "im2000-retrieved: warning: status not recorded: ") >= 2
			})
			if st := statusOf(t, c, id); st[0].Status.Read != uint64(store.Unread) || st[1].Status.Read != uint64(store.Unread) {
				t.Fatalf("read statuses %d, %d on a full disk", st[0].Status.Read, st[1].Status.Read)
			}
			free()
			// The next command of the same session records it.
			call(t, r, &msrap.QuerySize{ID: e.Recipients[0].ID}, msrap.NoError, false)
			if st := statusOf(t, c, id); st[0].Status.Read != uint64(store.ReadAll) {
				t.Fatalf("read status %d once there is room, want readall", st[0].Status.Read)
			}
			// The end of carol's session (Abort) records hers.
			if st := statusOf(t, c, id); st[1].Status.Read != uint64(store.Unread) {
				t.Fatalf("carol's read status %d before her session ended", st[1].Status.Read)
			}
			r2.Close()
			await(t, 5e9, "carol's read status at the end of her session", func() bool {
				return statusOf(t, c, id)[1].Status.Read == uint64(store.ReadAll)
			})
		})
	}
}

// TestSilenceRecordsRead: a read status a full disk kept from being
// written, in a session that ended before there was room, is not lost:
// fetch's next run only silences the message (it has it), and a silenced
// message is read by definition.
func TestSilenceRecordsRead(t *testing.T) {
	h := newStoreHost(t, "tcpserver", func(e *env) { mountTmpfs(t, e.store, "2m") })
	c := login(t, h, "alice")
	msg := []byte(testMessage + strings.Repeat("body line\r\n", 200))
	id := submit(t, c, msg, 1<<15, &msoap.SubmitEnvelope{Recipients: []wire.MailBox{mb("bob", "example.net")}, Lifetime: 86400})
	e := envelopeOf(t, h, id)
	free := fillDisk(t, h.store)
	defer free()
	r := dialProto(t, msrap.Protocol, h.msrap)
	if got := retrieveAll(t, r, e.Recipients[0].ID, msrap.All, 0); !bytes.Equal(got, msg) {
		t.Fatalf("retrieved %d octets", len(got))
	}
	await(t, 5e9, "the log line", func() bool { return strings.Contains(storeLogs(h), "im2000-retrieved: warning: status not recorded: ") })
	r.Close() // the session ends on a full disk: its last try (Abort) fails
	time.Sleep(time.Second)
	free()
	r2 := dialProto(t, msrap.Protocol, h.msrap)
	call(t, r2, &msrap.Silence{ID: e.Recipients[0].ID}, msrap.NoError, false)
	r2.Close()
	if strings.Contains(storeLogs(h), "recorded after all") {
		t.Fatal("the first session recorded the status after all (its end came after the room): the test proves nothing")
	}
	if st := statusOf(t, c, id); st[0].Status.Read != uint64(store.ReadAll) {
		t.Errorf("silenced, but read status %d, want readall (%d)", st[0].Status.Read, store.ReadAll)
	}
}

// TestIndexNotListable: another local user (made by the test) can reach a
// store whose root was made with a plain mkdir (0755), but cannot list
// rcpt/ or lists/, nor open a message through its link there, nor read the
// store's key (with it, every recipient id can be derived: the key is the
// capability the links of old were), and the servers warn about the open
// root.
func TestIndexNotListable(t *testing.T) {
	uid, gid := otherUser(t)
	h := newStoreHost(t, "tcpserver", nil)
	// The test's temporary directories are 0700: open the way down to the
	// store, as a store under /var would be.
	for d := filepath.Dir(h.store); d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}
	c := login(t, h, "alice")
	id := submit(t, c, []byte(testMessage), 1<<16, &msoap.SubmitEnvelope{Recipients: []wire.MailBox{mb("bob", "example.net")}, Lists: [][]byte{[]byte("news")}, Lifetime: 86400})
	// The message's one link, rcpt/<locator>: the first 12 octets of its
	// id in hex (lib/store/rid.go). It and the key exist: a refusal below
	// is the modes', not a missing file's.
	link, key := filepath.Join(h.store, "rcpt", hex.EncodeToString(id[:12])), filepath.Join(h.store, ".key")
	if _, err := os.Lstat(link); err != nil {
		t.Fatalf("the message's link: %v", err)
	}
	if fi, err := os.Stat(key); err != nil || fi.Size() == 0 {
		t.Fatalf("the store's key: %v", err)
	}
	as := func(args ...string) (string, error) {
		cmd := exec.Command(args[0], args[1:]...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := as("ls", h.store); err != nil || !strings.Contains(out, "rcpt") {
		t.Fatalf("%s cannot even list the store root (the test proves nothing): %v: %s", otherName, err, out)
	}
	for _, args := range [][]string{
		{"ls", filepath.Join(h.store, "rcpt")},
		{"ls", filepath.Join(h.store, "lists")},
		{"ls", filepath.Join(h.store, "lists", "news")},
		{"cat", link},
		{"cat", key},
		{"ls", filepath.Join(h.store, "alice", "msg")},
	} {
		if out, err := as(args...); err == nil || !strings.Contains(out, "Permission denied") {
			t.Errorf("%s: %v as %s: %v: %s", strings.Join(args, " "), err, otherName, err, out)
		}
	}
	if !regexp.MustCompile(`(?m)^im2000-submitd: warning: store: .* is open to other users \(mode 0755\)`).MatchString(storeLogs(h)) {
		t.Errorf("no warning about the open store root")
	}
}
