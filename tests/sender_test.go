package tests

import (
	"encoding/json"
	"maps"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"im2000/lib/msgid"
	"im2000/lib/session"
	"im2000/lib/store"
	"im2000/lib/wire"
	"im2000/lib/wire/msoap"
)

// queueSummary runs im2000-status --queue --json.
func queueSummary(t *testing.T, e *env) (q struct {
	Messages, Recipients int
	States               map[string]int
	Destinations         []struct {
		Domain     string
		Recipients int
	}
	Oldest *struct {
		ID      string
		Expires time.Time
	}
}) {
	t.Helper()
	r := e.run("", "im2000-status", "--queue", "--json")
	if r.code != 0 {
		t.Fatalf("--queue: exit %d, %s", r.code, r.stderr)
	}
	if err := json.Unmarshal([]byte(r.stdout), &q); err != nil {
		t.Fatalf("--queue --json: %v: %s", err, r.stdout)
	}
	return q
}

// TestSenderTools: cancel, resend and the queue summary of im2000-status
// on the store's host, with notifyd running: a resend of a recipient the
// agent has already (notifying, next attempt an hour away) notifies it
// again at once.
func TestSenderTools(t *testing.T) {
	bob := newAgentHostFor(t, "listener", "example.net", "", "bob")
	e, a := queueStore(t, map[string]string{"example.net": bob.rnasp, "example.com": "127.0.0.1:1"}, map[string]string{"retrybase": "1", "resend": "3600", "resendfloor": "1"})
	_, logs := daemonEnv(t, e.vars, "", filepath.Join(bin, "im2000-notifyd"))
	first := e.inject("Subject: one\n\n1\n", "bob@example.net", "carol@example.com")
	second := e.inject("Subject: two\n\n2\n", "bob@example.net")
	id1, _ := msgid.Parse(first)
	for start := time.Now(); spooled(bob, "bob") < 2; time.Sleep(100 * time.Millisecond) {
		if time.Since(start) > 30*time.Second {
			t.Fatalf("bob was not notified:\n%s", logs.String())
		}
	}
	for start := time.Now(); stateOf(t, a, id1, 0) != store.Notifying; time.Sleep(100 * time.Millisecond) {
		if time.Since(start) > 30*time.Second {
			t.Fatalf("bob's notification not recorded:\n%s", logs.String())
		}
	}

	// Expiry in every view.
	r := e.run("", "im2000-status")
	if f := strings.Split(strings.Split(r.stdout, "\n")[0], "\t"); len(f) != 6 || !strings.HasPrefix(f[5], time.Now().UTC().AddDate(0, 0, 30).Format("2006-01-02")) {
		t.Errorf("listing without an expiry: %q", r.stdout)
	}
	if r := e.run("", "im2000-status", first); !strings.Contains(r.stdout, "\nexpires\t") {
		t.Errorf("recipient view without an expiry: %q", r.stdout)
	}

	q := queueSummary(t, e)
	if q.Messages != 2 || q.Recipients != 3 || q.States["notifying"] != 2 || q.Oldest == nil || q.Oldest.ID != first || q.Oldest.Expires.IsZero() ||
		len(q.Destinations) != 2 || q.Destinations[0].Domain != "example.net" || q.Destinations[0].Recipients != 2 {
		t.Errorf("queue summary: %+v", q)
	}
	if r := e.run("", "im2000-status", "--queue"); r.code != 0 || !strings.Contains(r.stdout, "destination\texample.net\t2\tnext\t") || !strings.Contains(r.stdout, "oldest\t"+first+"\tsubmitted\t") {
		t.Errorf("--queue: %q", r.stdout)
	}

	// Resend: bob's agent gets the first message again now, not in an hour.
	spool := spooled(bob, "bob")
	ents, _ := os.ReadDir(filepath.Join(bob.spool, "bob"))
	for _, ent := range ents {
		os.Remove(filepath.Join(bob.spool, "bob", ent.Name())) // the agent passed them on
	}
	if r := e.run("", "im2000-status", "--resend", first); r.code != 0 || !strings.Contains(r.stdout, "resending "+first+" to 2 recipients") {
		t.Fatalf("--resend: exit %d, %q %s", r.code, r.stdout, r.stderr)
	}
	for start := time.Now(); spooled(bob, "bob") < 1; time.Sleep(100 * time.Millisecond) {
		if time.Since(start) > 30*time.Second {
			t.Fatalf("resend did not notify bob again (had %d):\n%s", spool, logs.String())
		}
	}
	// A resend loop (the issue 17 review): with the floor at an hour, bob
	// was notified within it; each resend says when he will be, and
	// moves nothing.
	e.setConf("resendfloor", "3600")
	for i := 0; i < 3; i++ {
		if r := e.run("", "im2000-status", "--resend", first); r.code != 0 || !strings.Contains(r.stdout, "resending "+first+" to 2 recipients; ") ||
			!strings.Contains(r.stdout, " of them not before ") || !strings.Contains(r.stdout, "the store's resendfloor") {
			t.Fatalf("--resend within the floor: exit %d, %q %s", r.code, r.stdout, r.stderr)
		}
	}
	if next := nextOf(t, a, id1, 0); next.Before(time.Now().Add(50 * time.Minute)) {
		t.Errorf("bob, notified just now, is due again at %v despite the floor", next)
	}

	// Cancel: gone from every view and the summary.
	if r := e.run("", "im2000-status", "--cancel", second); r.code != 0 || r.stdout != "cancelled "+second+"\n" {
		t.Fatalf("--cancel: exit %d, %q %s", r.code, r.stdout, r.stderr)
	}
	if r := e.run("", "im2000-status", "--cancel", second); r.code != 100 || !strings.Contains(r.stderr, "no such message") {
		t.Errorf("second --cancel: exit %d, %q", r.code, r.stderr)
	}
	if r := e.run("", "im2000-status", "--resend", second); r.code != 100 {
		t.Errorf("--resend of a cancelled message: exit %d, %q", r.code, r.stderr)
	}
	if q := queueSummary(t, e); q.Messages != 1 || q.Oldest.ID != first {
		t.Errorf("summary after cancel: %+v", q)
	}
	for _, bad := range [][]string{{"--cancel"}, {"--cancel", first, "--queue"}, {"--resend", "--cancel", first}, {"--queue", first}} {
		if r := e.run("", "im2000-status", bad...); r.code != 100 {
			t.Errorf("%v: exit %d; want 100", bad, r.code)
		}
	}
}

// TestSenderToolsRemote: the same through MSOAP: cancel, resend (MSOAP
// Resend, im2000's extension) and the queue summary.
func TestSenderToolsRemote(t *testing.T) {
	h := newStoreHost(t, "tcpserver", nil)
	cl := newEnv(t, "alice")
	os.Remove(cl.store)
	cl.vars = append(cl.vars[:0:0], "IM2000_CONF="+cl.conf, "IM2000_ACCOUNT=alice", "PATH="+os.Getenv("PATH"), "HOME="+t.TempDir(), "TZ=UTC")
	cl.setConf("remote", h.msoap)
	cl.setConf("password", "alicepw")
	cl.setConf("sentlog", filepath.Join(t.TempDir(), "sent"))
	id1 := cl.inject("Subject: one\n\n1\n", "bob@example.net", "carol@example.com")
	id2 := cl.inject("Subject: two\n\n2\n", "bob@example.net")

	q := queueSummary(t, cl)
	if q.Messages != 2 || q.Recipients != 3 || q.States["unprocessed"] != 3 || q.Oldest == nil || q.Oldest.ID != id1 {
		t.Errorf("remote summary: %+v", q)
	}
	if r := cl.run("", "im2000-status", "--cancel", id2); r.code != 0 || r.stdout != "cancelled "+id2+"\n" {
		t.Fatalf("remote --cancel: exit %d, %q %s", r.code, r.stdout, r.stderr)
	}
	s, _ := store.Open(h.store)
	a, _ := s.Account("alice")
	if ids, _ := a.Messages(); len(ids) != 1 || ids[0].String() != id1 {
		t.Errorf("at the store after a remote cancel: %v", ids)
	}
	if r := cl.run("", "im2000-status", "--cancel", id2); r.code != 100 || !strings.Contains(r.stderr, "no such message") {
		t.Errorf("second remote --cancel: exit %d, %q", r.code, r.stderr)
	}
	// bob's next attempt an hour away, as after a failed one: a resend
	// makes it now.
	mid, _ := msgid.Parse(id1)
	if err := a.Update(mid, func(_ *store.Envelope, st *store.Status) error {
		st.Recipients[0].Next = time.Now().Add(time.Hour).Truncate(time.Second)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if r := cl.run("", "im2000-status", "--resend", id1); r.code != 0 || r.stdout != "resending "+id1+" to 2 recipients\n" {
		t.Errorf("remote --resend: exit %d, %q %s", r.code, r.stdout, r.stderr)
	}
	if next := nextOf(t, a, mid, 0); next.After(time.Now()) {
		t.Errorf("after a remote --resend, bob is due at %v; want now", next)
	}
	// Again at once: nothing moves, the answer is the same, submitd logs
	// nothing (a loop of resends cannot fill its log).
	waitFor(t, func() bool { return strings.Count(storeLogs(h), "info: resent: ") == 1 })
	logins := strings.Count(storeLogs(h), "info: login: ")
	if r := cl.run("", "im2000-status", "--resend", id1); r.code != 0 || r.stdout != "resending "+id1+" to 2 recipients\n" {
		t.Errorf("remote --resend again: exit %d, %q %s", r.code, r.stdout, r.stderr)
	}
	// A session after it: once its login is logged, so is all the resend's.
	if r := cl.run("", "im2000-status", "--cancel", msgid.New().String()); r.code != 100 {
		t.Errorf("remote --cancel of an unknown id: exit %d", r.code)
	}
	waitFor(t, func() bool { return strings.Count(storeLogs(h), "info: login: ") == logins+2 })
	if n := strings.Count(storeLogs(h), "info: resent: "); n != 1 {
		t.Errorf("%d lines info: resent: for one resend that moved and one that did not", n)
	}
	if r := cl.run("", "im2000-status", "--resend", id2); r.code != 100 || !strings.Contains(r.stderr, "no such message") {
		t.Errorf("remote --resend of a cancelled message: exit %d, %q", r.code, r.stderr)
	}
	if q := queueSummary(t, cl); q.Messages != 1 {
		t.Errorf("remote summary after cancel: %+v", q)
	}
}

// nextOf is when recipient i of message id is due for its next attempt.
func nextOf(t *testing.T, a *store.Account, id msgid.ID, i int) time.Time {
	t.Helper()
	st, err := a.Status(id)
	if err != nil {
		t.Fatal(err)
	}
	return st.Recipients[i].Next
}

// TestResendOtherStore: a store of another implementation of the profile
// does not know MSOAP Resend, im2000's extension, and refuses it as any
// unknown alternative (errormalformedpdu): remote --resend says so and
// exits 100, and nothing else of the session changes.
func TestResendOtherStore(t *testing.T) {
	profile := *msoap.Protocol
	profile.Commands = maps.Clone(msoap.Protocol.Commands)
	delete(profile.Commands, (&msoap.Resend{}).Alt())
	srv := &session.Server{Proto: &profile, Timeout: 10 * time.Second, MaxPDU: 1 << 16, MaxConns: 4,
		NewHandler: func(*session.Session) session.Handler { return profileStore{} }}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.ServeListener(l)
	t.Cleanup(func() { l.Close(); srv.Shutdown() })

	cl := newEnv(t, "alice")
	os.Remove(cl.store)
	cl.vars = append(cl.vars[:0:0], "IM2000_CONF="+cl.conf, "IM2000_ACCOUNT=alice", "PATH="+os.Getenv("PATH"), "HOME="+t.TempDir(), "TZ=UTC")
	cl.setConf("remote", l.Addr().String())
	cl.setConf("password", "alicepw")
	id := msgid.New().String()
	if r := cl.run("", "im2000-status", "--resend", id); r.code != 100 || !strings.Contains(r.stderr, "does not offer MSOAP Resend") {
		t.Errorf("--resend at a store without the extension: exit %d, %q", r.code, r.stderr)
	}
	if r := cl.run("", "im2000-status", "--cancel", id); r.code != 0 {
		t.Errorf("--cancel at that store: exit %d, %q", r.code, r.stderr)
	}
}

// profileStore answers the profile's MSOAP as a store that has everything
// asked of it: any login, any cancel.
type profileStore struct{}

func (profileStore) Abort(*session.Session) {}
func (profileStore) Handle(s *session.Session, cmd wire.Body) session.Reply {
	switch cmd.(type) {
	case *msoap.Authenticate:
		s.Account = "alice"
		return session.Reply{Body: msoap.AuthenticateOK{}}
	case *msoap.Cancel:
		return session.Reply{Body: msoap.CancelOK{}}
	}
	return session.Reply{Status: msoap.ErrorUnexpectedCommand, ForceAbort: true}
}

// hostileStore serves MSOAP as handler answers it, at an address for a
// client's remote setting.
func hostileStore(t *testing.T, proto *wire.Protocol, handler session.Handler) string {
	srv := &session.Server{Proto: proto, Timeout: 10 * time.Second, MaxPDU: 1 << 16, MaxConns: 4,
		NewHandler: func(*session.Session) session.Handler { return handler }}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.ServeListener(l)
	t.Cleanup(func() { l.Close(); srv.Shutdown() })
	return l.Addr().String()
}

// resendStore answers Resend with its answer, as a hostile store may.
type resendStore struct{ answer msoap.ResendOK }

func (resendStore) Abort(*session.Session) {}
func (r resendStore) Handle(s *session.Session, cmd wire.Body) session.Reply {
	switch cmd.(type) {
	case *msoap.Authenticate:
		s.Account = "alice"
		return session.Reply{Body: msoap.AuthenticateOK{}}
	case *msoap.Resend:
		a := r.answer
		return session.Reply{Body: &a}
	}
	return session.Reply{Status: msoap.ErrorUnexpectedCommand, ForceAbort: true}
}

// TestResendBadAnswers (review of issue 17): a store's answer to Resend
// that no store gives (year 1, year 36812, -1 recipients as printed
// before) is a temporary failure naming the answer, not a line of
// nonsense; a store with nobody to notify (0 recipients: all silenced, or
// a post to lists only) is exit 100 saying both.
func TestResendBadAnswers(t *testing.T) {
	cl := newEnv(t, "alice")
	os.Remove(cl.store)
	cl.vars = append(cl.vars[:0:0], "IM2000_CONF="+cl.conf, "IM2000_ACCOUNT=alice", "PATH="+os.Getenv("PATH"), "HOME="+t.TempDir(), "TZ=UTC")
	cl.setConf("password", "alicepw")
	id := msgid.New().String()
	soon := uint64(time.Now().Add(time.Hour).Unix())
	for _, c := range []struct {
		answer msoap.ResendOK
		code   int
		want   string
	}{
		{msoap.ResendOK{Recipients: 2, Held: 1, Until: soon}, 0, "resending " + id + " to 2 recipients; 1 of them not before " + time.Unix(int64(soon), 0).UTC().Format(time.RFC3339)},
		{msoap.ResendOK{}, 100, "nobody to notify: every recipient has silenced or failed for good, or the message went to lists only"},
		{msoap.ResendOK{Recipients: 1, Held: 1}, 111, "bad answer to MSOAP Resend (recipients 1, held 1, until 0)"},
		{msoap.ResendOK{Recipients: 1, Held: 1, Until: 1<<40 - 1}, 111, "bad answer to MSOAP Resend"},
		{msoap.ResendOK{Recipients: 1<<64 - 1, Held: 1<<64 - 1, Until: soon}, 111, "bad answer to MSOAP Resend"},
		{msoap.ResendOK{Recipients: 1, Held: 2, Until: soon}, 111, "bad answer to MSOAP Resend"},
		{msoap.ResendOK{Recipients: 1, Until: soon}, 111, "bad answer to MSOAP Resend"},
	} {
		cl.setConf("remote", hostileStore(t, msoap.Protocol, resendStore{c.answer}))
		r := cl.run("", "im2000-status", "--resend", id)
		if out := r.stdout + r.stderr; r.code != c.code || !strings.Contains(out, c.want) {
			t.Errorf("answer %+v: exit %d, %q; want exit %d, %q", c.answer, r.code, out, c.code, c.want)
		}
	}
}
