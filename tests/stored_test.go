package tests

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"im2000/lib/msgid"
	"im2000/lib/session"
	"im2000/lib/store"
	"im2000/lib/wire"
	"im2000/lib/wire/msoap"
	"im2000/lib/wire/msrap"
)

// storeHost is a message store served by im2000-submitd and
// im2000-retrieved, under tcpserver or listening themselves.
type storeHost struct {
	*env
	msoap, msrap string // addresses
	logs         []*syncBuffer
}

func writePasswords(t *testing.T, e *env, accounts ...string) {
	var b strings.Builder
	for _, a := range accounts {
		h, err := bcrypt.GenerateFromPassword([]byte(a+"pw"), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s:%s\n", a, h)
	}
	e.setConf("passwords", b.String())
}

// newStoreHost starts the two servers; setup, if not nil, adds to their
// configuration first (a listener reads it once, at start).
func newStoreHost(t *testing.T, mode string, setup func(*env), extra ...string) *storeHost {
	e := newEnv(t, "alice")
	writePasswords(t, e, "alice", "bob")
	os.Mkdir(filepath.Join(e.conf, "lists"), 0o755)
	e.setConf("lists/news", "alice")
	e.setConf("databytes", "100000")
	if setup != nil {
		setup(e)
	}
	h := &storeHost{env: e}
	for i, prog := range []string{"im2000-submitd", "im2000-retrieved"} {
		port := strconv.Itoa(freePort(t))
		addr := "127.0.0.1:" + port
		var logs *syncBuffer
		if mode == "tcpserver" {
			tcpserver, err := exec.LookPath("tcpserver")
			if err != nil {
				t.Fatal("tcpserver (ucspi-tcp) is not installed: run tests/deps.sh")
			}
			_, logs = daemonEnv(t, e.vars, addr, tcpserver, append([]string{"-RHl0", "-c", "20", "127.0.0.1", port, filepath.Join(bin, prog)}, extra...)...)
		} else {
			_, logs = daemonEnv(t, e.vars, addr, filepath.Join(bin, prog), append([]string{"-l", addr, "-c", "20"}, extra...)...)
		}
		h.logs = append(h.logs, logs)
		if i == 0 {
			h.msoap = addr
		} else {
			h.msrap = addr
		}
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, l := range h.logs {
				t.Logf("server log:\n%s", l.String())
			}
		}
	})
	return h
}

func dialProto(t *testing.T, p *wire.Protocol, addr string) *session.Client {
	c, err := session.Dial(t.Context(), p, addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// call sends a command and requires the given status and forceabort.
func call(t *testing.T, c *session.Client, cmd wire.Body, status uint64, abort bool) *wire.PDU {
	t.Helper()
	pdu, err := c.Call(cmd)
	var se *session.StatusError
	if err != nil && !errors.As(err, &se) {
		t.Fatalf("%T: %v", cmd, err)
	}
	if pdu.Status != status || pdu.ForceAbort != abort {
		t.Fatalf("%T: %s (forceabort %v), want %s (forceabort %v)", cmd, c.Proto.StatusName(pdu.Status), pdu.ForceAbort, c.Proto.StatusName(status), abort)
	}
	return pdu
}

func login(t *testing.T, h *storeHost, account string) *session.Client {
	c := dialProto(t, msoap.Protocol, h.msoap)
	call(t, c, &msoap.Authenticate{Account: account, Password: account + "pw"}, msoap.NoError, false)
	return c
}

func mb(local, domain string) wire.MailBox {
	return wire.MailBox{Local: local, Domain: strings.Split(domain, ".")}
}

// submit sends a message in chunks of the given size and returns its id.
func submit(t *testing.T, c *session.Client, msg []byte, chunk int, env *msoap.SubmitEnvelope) msgid.ID {
	t.Helper()
	call(t, c, env, msoap.NoError, false)
	for off := 0; ; off += chunk {
		end := min(off+chunk, len(msg))
		last := end == len(msg)
		pdu := call(t, c, &msoap.SubmitMsgChunk{IsLast: last, Offset: uint64(off), Data: msg[off:end]}, msoap.NoError, false)
		if last {
			id := pdu.Response.(*msoap.SubmitMsgChunkOK).ID
			if id == nil {
				t.Fatal("last chunk answered without an identifier")
			}
			return *id
		}
	}
}

// retrieveAll pages through a part with the given length per command.
func retrieveAll(t *testing.T, c *session.Client, id msgid.ID, kind, length uint64) []byte {
	t.Helper()
	var out []byte
	for {
		pdu := call(t, c, &msrap.Retrieve{ID: id, Type: kind, Offset: uint64(len(out)), Length: length}, msrap.NoError, false)
		r := pdu.Response.(*msrap.RetrieveOK)
		out = append(out, r.Data...)
		if uint64(len(out)) >= r.Size || len(r.Data) == 0 {
			if uint64(len(out)) != r.Size {
				t.Fatalf("paged %d octets of %d", len(out), r.Size)
			}
			return out
		}
	}
}

func statusOf(t *testing.T, c *session.Client, id msgid.ID) []msoap.RecipientStatus {
	t.Helper()
	return call(t, c, &msoap.Track{ID: id}, msoap.NoError, false).Response.(*msoap.TrackOK).Recipients
}

const testMessage = "From: Alice <alice@example.org>\r\nTo: bob@example.net, carol@example.com\r\nSubject: the plan\r\nX-Extra: folded\r\n and more\r\nDate: Sun, 22 Nov 2026 18:00:00 +0000\r\nMessage-ID: <plan@example.org>\r\n\r\nLine one.\r\nLine two.\r\n"

func TestStoreServices(t *testing.T) {
	for _, mode := range []string{"tcpserver", "listener"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			h := newStoreHost(t, mode, nil)
			c := dialProto(t, msoap.Protocol, h.msoap)
			call(t, c, &msoap.Track{ID: msgid.New()}, msoap.ErrorNotAuthenticated, false)
			call(t, c, &msoap.Authenticate{Account: "alice", Password: "wrong"}, msoap.ErrorNotAuthenticated, false)
			call(t, c, &msoap.Authenticate{Account: "alice", Password: "alicepw"}, msoap.NoError, false)

			// Envelope statuses: a bad mailbox and a list alice may not post to are refused.
			envelope := &msoap.SubmitEnvelope{Recipients: []wire.MailBox{mb("bob", "example.net"), mb("carol", "example.com"), {Local: "", Domain: wire.DomainName{"x"}}},
				Lists: [][]byte{[]byte("news"), []byte("secret")}, Lifetime: 86400}
			resp := call(t, c, envelope, msoap.NoError, false).Response.(*msoap.SubmitEnvelopeOK)
			if fmt.Sprint(resp.Recipients, resp.Lists) != "[0 0 1] [0 1]" {
				t.Fatalf("envelope statuses %v %v", resp.Recipients, resp.Lists)
			}
			call(t, c, &msoap.SubmitMsgChunk{Offset: 0, Data: []byte("x")}, msoap.NoError, false)
			c.Close() // a submission cut off: nothing of it may stay
			c = login(t, h, "alice")
			id := submit(t, c, []byte(testMessage), 50, envelope)
			call(t, c, &msoap.SubmitEnvelope{Recipients: []wire.MailBox{mb("bob", "example.net")}, Lifetime: 60}, msoap.ErrorLifetimeTooShort, false)

			st := statusOf(t, c, id)
			if len(st) != 2 || st[0].Recipient.Local != "bob" || st[0].Status != (msoap.DeliveryStatus{Notification: 0, Read: 0, Pinned: true}) {
				t.Fatalf("track: %+v", st)
			}
			s, _ := store.Open(h.store)
			a, _ := s.Account("alice")
			if ids, _ := a.Messages(); len(ids) != 1 {
				t.Fatalf("%d messages in the archive, want 1 (the cut-off one must leave nothing)", len(ids))
			}
			m, err := a.Open(id)
			if err != nil {
				t.Fatal(err)
			}
			renv := m.Env
			m.Close()
			if renv.Sender.String() != "alice@example.org" {
				t.Fatalf("sender %s, want the authenticated account's address", renv.Sender)
			}
			bob, carol, list := renv.Recipients[0].ID, renv.Recipients[1].ID, renv.Lists[0].ID

			r := dialProto(t, msrap.Protocol, h.msrap)
			if size := call(t, r, &msrap.QuerySize{ID: bob}, msrap.NoError, false).Response.(*msrap.QuerySizeOK).Size; size != uint64(len(testMessage)) {
				t.Fatalf("querysize %d", size)
			}
			summary := string(retrieveAll(t, r, bob, msrap.SummaryOnly, 10))
			if strings.Contains(summary, "X-Extra") || !strings.Contains(summary, "Subject: the plan\r\n") || !strings.HasPrefix(summary, "From: ") {
				t.Fatalf("summary %q", summary)
			}
			if st := statusOf(t, c, id); st[0].Status.Read != 1 || st[1].Status.Read != 0 {
				t.Fatalf("after summary: %+v", st)
			}
			header := string(retrieveAll(t, r, bob, msrap.HeadersOnly, 0))
			if header != testMessage[:strings.Index(testMessage, "\r\n\r\n")+2] {
				t.Fatalf("header %q", header)
			}
			if all := string(retrieveAll(t, r, bob, msrap.All, 7)); all != testMessage {
				t.Fatalf("all %q", all)
			}
			retrieveAll(t, r, bob, msrap.SummaryOnly, 0) // never moves back
			call(t, r, &msrap.Silence{ID: bob}, msrap.NoError, false)
			call(t, r, &msrap.UnPin{ID: carol}, msrap.NoError, false)
			st = statusOf(t, c, id)
			if st[0].Status != (msoap.DeliveryStatus{Notification: 7, Read: 3, Pinned: true}) || st[1].Status != (msoap.DeliveryStatus{Notification: 0, Read: 0, Pinned: false}) {
				t.Fatalf("after silence and unpin: %+v", st)
			}

			// bob may not see alice's message through MSOAP.
			cb := login(t, h, "bob")
			call(t, cb, &msoap.Track{ID: id}, msoap.ErrorNoSuchMessage, false)
			call(t, cb, &msoap.Cancel{ID: id}, msoap.ErrorNoSuchMessage, false)
			call(t, r, &msrap.Retrieve{ID: id, Type: msrap.All}, msrap.ErrorNoSuchMessage, false) // the message id is no capability
			call(t, r, &msrap.Retrieve{ID: msgid.New(), Type: msrap.All}, msrap.ErrorNoSuchMessage, false)

			// The list: visible to ScanList once ScanLag has passed.
			time.Sleep(store.ScanLag + 1500*time.Millisecond)
			scan := call(t, r, &msrap.ScanList{ListName: "news", BeginTime: 0}, msrap.NoError, false).Response.(*msrap.ScanListOK)
			if len(scan.Messages) != 1 || scan.Messages[0] != list || scan.EndTime == 0 {
				t.Fatalf("scanlist: %+v", scan)
			}
			again := call(t, r, &msrap.ScanList{ListName: "news", BeginTime: scan.EndTime}, msrap.NoError, false).Response.(*msrap.ScanListOK)
			if len(again.Messages) != 0 {
				t.Fatalf("a scan from the last endtime repeats %v", again.Messages)
			}
			if all := string(retrieveAll(t, r, list, msrap.All, 0)); all != testMessage {
				t.Fatalf("list retrieval %q", all)
			}
			if out := h.run("", "im2000-status"); !strings.Contains(out.stdout, "list news read 1") {
				t.Fatalf("im2000-status does not count the list retrieval: %q", out.stdout)
			}

			call(t, c, &msoap.Cancel{ID: id}, msoap.NoError, false)
			call(t, c, &msoap.Track{ID: id}, msoap.ErrorNoSuchMessage, false)
			call(t, r, &msrap.Retrieve{ID: carol, Type: msrap.All}, msrap.ErrorNoSuchMessage, false)
			call(t, r, &msrap.Retrieve{ID: list, Type: msrap.All}, msrap.ErrorNoSuchMessage, false)
			if scan := call(t, r, &msrap.ScanList{ListName: "news"}, msrap.NoError, false).Response.(*msrap.ScanListOK); len(scan.Messages) != 0 {
				t.Fatalf("cancelled message still listed")
			}
		})
	}
}
