package tests

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"im2000/lib/msgid"
	"im2000/lib/wire"
	"im2000/lib/wire/msoap"
	"im2000/lib/wire/msrap"
	"im2000/lib/wire/rnaqp"
	"im2000/lib/wire/rnasp"
	"im2000/tests/hostile"
)

// The hostile-peer tests drive the real clients against fake servers
// (tests/hostile) that answer one command of a session in each wrong way
// there is, and every other command rightly: each client must end with a
// temporary failure and a clear message, go on with the peers that behave,
// and never panic (env.run and daemonEnv fail the test on an alert or a
// panic in a program's log). The clients' timeout setting is 1 second, so
// a silent peer costs a second; the cases run side by side.

// clearFailure is what a client says of a peer that broke the protocol,
// said nothing, or hung up.
var clearFailure = regexp.MustCompile(`protocol error|no answer within|closed the connection`)

// caseLimit is how long one case may take: a silent peer's second, and
// room for a loaded machine.
const caseLimit = 5 * time.Second

// refuse is a right answer to a command the fake does not expect.
func refuse(p *wire.Protocol) hostile.Answer {
	return hostile.Answer{Frame: wire.MarshalResponse(true, p.Status.Unexpected, wire.Null{})}
}

// fakeStore is a store that behaves: it serves msg to every retrieval.
func fakeStore(msg string) hostile.Handler {
	return func(cmd wire.Body) hostile.Answer {
		switch c := cmd.(type) {
		case *msrap.Retrieve:
			part := msg
			if c.Type == msrap.HeadersOnly {
				part, _, _ = strings.Cut(msg, "\r\n\r\n")
				part += "\r\n"
			}
			off := min(c.Offset, uint64(len(part)))
			return hostile.Respond(&msrap.RetrieveOK{Data: []byte(part[off:]), Size: uint64(len(part))})
		case *msrap.QuerySize:
			return hostile.Respond(&msrap.QuerySizeOK{Size: uint64(len(msg))})
		case *msrap.Silence:
			return hostile.Respond(msrap.SilenceOK{})
		case *msrap.ScanList:
			return hostile.Respond(&msrap.ScanListOK{EndTime: c.BeginTime})
		}
		return refuse(msrap.Protocol)
	}
}

// noteAt is a notification of a message at the store at addr.
func noteAt(addr string, id byte, size int) rnaqp.NotificationAndLocalData {
	n := rnasp.Notification{StoreClear: wire.ServiceLocation{Literals: []wire.AddrPort{netip.MustParseAddrPort(addr)}},
		Recipient: mb("bob", "example.net"), ID: msgid.ID{0xee, id}, Sender: "alice@example.org"}
	if size > 0 {
		s := uint64(size)
		n.Size = &s
	}
	return rnaqp.NotificationAndLocalData{Notification: n, Date: uint64(time.Now().Unix()),
		Submitter: wire.ClientLocation{Addr: netip.MustParseAddr("127.0.0.1"), Port: 4000}}
}

// fakeAgent is an agent that behaves: it hands out notes once a session.
func fakeAgent(notes ...rnaqp.NotificationAndLocalData) hostile.Handler {
	given := false
	return func(cmd wire.Body) hostile.Answer {
		switch cmd.(type) {
		case *rnaqp.Authenticate:
			return hostile.Respond(rnaqp.AuthenticateOK{})
		case rnaqp.RetrieveAndClear:
			r := &rnaqp.RetrieveAndClearOK{}
			if !given {
				r.Notifications, given = notes, true
			}
			return hostile.Respond(r)
		}
		return refuse(rnaqp.Protocol)
	}
}

// hostileCase is one way a peer misbehaves: bad wraps the session
// handler of a peer that behaves.
type hostileCase struct {
	name string
	bad  func(good hostile.Handler) hostile.Handler
}

// wrongAnswers lists a command's every wrong answer (hostile.Wrong) as
// cases, T being the command's type and right its answer's alternative.
func wrongAnswers[T wire.Body](prefix string, p *wire.Protocol, right int) []hostileCase {
	var out []hostileCase
	for _, c := range hostile.Wrong(p, right) {
		out = append(out, hostileCase{prefix + "/" + c.Name, func(good hostile.Handler) hostile.Handler {
			return hostile.Target[T](good, c.Answer)
		}})
	}
	return out
}

// badAnswer is a case answering the commands of type T with bad(cmd).
func badAnswer[T wire.Body](name string, bad func(T) hostile.Answer) hostileCase {
	return hostileCase{name, func(good hostile.Handler) hostile.Handler { return hostile.TargetFunc(good, bad) }}
}

func behaves(good hostile.Handler) hostile.Handler { return good }

// sideBySide runs n cases as subtests, all at once: a silent peer's
// second is waited for once, not once a case.
func sideBySide(t *testing.T, n int, name func(i int) string, run func(t *testing.T, i int)) {
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t.Run(name(i), func(t *testing.T) {
				start := time.Now()
				run(t, i)
				if d := time.Since(start); d > caseLimit {
					t.Errorf("took %v", d)
				}
			})
		}()
	}
	wg.Wait()
}

// each runs cases side by side.
func each(t *testing.T, cases []hostileCase, run func(t *testing.T, c hostileCase)) {
	sideBySide(t, len(cases), func(i int) string { return cases[i].name }, func(t *testing.T, i int) { run(t, cases[i]) })
}

// expectTemporary checks a command's run against a hostile peer.
func expectTemporary(t *testing.T, r result) {
	t.Helper()
	t.Logf("exit %d: %s", r.code, r.stderr)
	if r.code != 111 || !clearFailure.MatchString(r.stderr) {
		t.Errorf("exit %d (want 111), stderr without a clear reason:\n%s", r.code, r.stderr)
	}
}

// retrieveCases are a retrieval's wrong sizes and counts.
func retrieveCases(prefix string) []hostileCase {
	return []hostileCase{
		badAnswer(prefix+"/more-data-than-size", func(*msrap.Retrieve) hostile.Answer {
			return hostile.Respond(&msrap.RetrieveOK{Data: []byte(strings.Repeat("x", 64)), Size: 10})
		}),
		badAnswer(prefix+"/size-changes", func(c *msrap.Retrieve) hostile.Answer {
			return hostile.Respond(&msrap.RetrieveOK{Data: []byte("0123456789"), Size: 20 + c.Offset})
		}),
		badAnswer(prefix+"/nothing-before-the-end", func(*msrap.Retrieve) hostile.Answer {
			return hostile.Respond(&msrap.RetrieveOK{Size: 10})
		}),
		badAnswer(prefix+"/over-databytes", func(*msrap.Retrieve) hostile.Answer {
			return hostile.Respond(&msrap.RetrieveOK{Data: []byte("x"), Size: 1 << 40})
		}),
	}
}

// TestHostileFetch: im2000-fetch against a hostile store (one of its two
// notifications) and a hostile agent.
func TestHostileFetch(t *testing.T) {
	good := hostile.Start(t, msrap.Protocol, func() hostile.Handler {
		return fakeStore("From: alice@example.org\r\nSubject: good\r\n\r\nfrom-the-good-store\r\n")
	})
	hostileMsg := fakeStore("From: alice@example.org\r\nSubject: other\r\n\r\nfrom-the-other-store\r\n")
	var storeCases, agentCases []hostileCase
	storeCases = append(storeCases, wrongAnswers[*msrap.Retrieve]("store/retrieve", msrap.Protocol, 4)...)
	storeCases = append(storeCases, retrieveCases("store/retrieve")...)
	storeCases = append(storeCases, wrongAnswers[*msrap.Silence]("store/silence", msrap.Protocol, 2)...)
	agentCases = append(agentCases, wrongAnswers[*rnaqp.Authenticate]("agent/authenticate", rnaqp.Protocol, 1)...)
	agentCases = append(agentCases, wrongAnswers[rnaqp.RetrieveAndClear]("agent/retrieveandclear", rnaqp.Protocol, 2)...)

	fetch := func(t *testing.T, store, agent func(hostile.Handler) hostile.Handler) (result, []string) {
		bad := hostile.Start(t, msrap.Protocol, func() hostile.Handler { return store(hostileMsg) })
		notes := []rnaqp.NotificationAndLocalData{noteAt(bad.Addr, 1, 0), noteAt(good.Addr, 2, 0)}
		ag := hostile.Start(t, rnaqp.Protocol, func() hostile.Handler { return agent(fakeAgent(notes...)) })
		e := newEnv(t, "bob")
		e.setConf("timeout", "1")
		e.setConf("rna", ag.Addr)
		e.setConf("password", "bobpw")
		// Both stores are example.org's, so that their sender is verified.
		e.setConf("routes", "_msrap._tcp.example.org "+bad.Addr+" "+good.Addr+"\n")
		maildir := filepath.Join(t.TempDir(), "Maildir")
		return e.run("", "im2000-fetch", "-d", maildir), maildirMessages(t, maildir)
	}
	t.Run("behaving", func(t *testing.T) {
		r, msgs := fetch(t, behaves, behaves)
		if r.code != 0 || len(msgs) != 2 {
			t.Fatalf("fetch from peers that behave: exit %d, %d messages: %s", r.code, len(msgs), r.stderr)
		}
	})
	each(t, storeCases, func(t *testing.T, c hostileCase) {
		r, msgs := fetch(t, c.bad, behaves)
		expectTemporary(t, r)
		// A store that breaks a retrieval's bounds has its entry dropped
		// (lib/inbox.ErrRefused); any other failure keeps it.
		if !strings.Contains(strings.Join(msgs, ""), "from-the-good-store") || !strings.Contains(r.stderr, "1 kept for later") && !strings.Contains(r.stderr, "1 dropped") {
			t.Errorf("the message at the store that behaves: %d delivered; %s", len(msgs), r.stderr)
		}
	})
	each(t, agentCases, func(t *testing.T, c hostileCase) {
		r, _ := fetch(t, behaves, c.bad)
		expectTemporary(t, r)
	})
}

// pop3 is a minimal POP3 client.
type pop3 struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func dialPOP3(t *testing.T, addr string) *pop3 {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	p := &pop3{t: t, conn: c, r: bufio.NewReader(c)}
	if g := p.line(); !strings.HasPrefix(g, "+OK") {
		t.Fatalf("greeting %q", g)
	}
	return p
}

func (p *pop3) line() string {
	l, err := p.r.ReadString('\n')
	if err != nil {
		p.t.Fatalf("POP3: %v after %q", err, l)
	}
	return strings.TrimRight(l, "\r\n")
}

func (p *pop3) cmd(c string) string {
	if _, err := fmt.Fprintf(p.conn, "%s\r\n", c); err != nil {
		p.t.Fatal(err)
	}
	return p.line()
}

// multi reads a multi-line response's lines up to the dot.
func (p *pop3) multi() string {
	var b strings.Builder
	for l := p.line(); l != "."; l = p.line() {
		b.WriteString(l + "\n")
	}
	return b.String()
}

func (p *pop3) login(user string) string {
	if r := p.cmd("USER " + user); !strings.HasPrefix(r, "+OK") {
		p.t.Fatalf("USER: %q", r)
	}
	return p.cmd("PASS pw")
}

// TestHostilePOP3: one listening im2000-pop3d, users whose store or agent
// is hostile, and beside each a user whose peers behave and who reads his
// mail all the same.
func TestHostilePOP3(t *testing.T) {
	good := hostile.Start(t, msrap.Protocol, func() hostile.Handler {
		return fakeStore("From: alice@example.org\r\nSubject: good\r\n\r\npop-good\r\n")
	})
	type popCase struct {
		hostileCase
		store bool   // the store misbehaves (else the agent)
		size  bool   // the notification states the size (else QuerySize is asked)
		retr  string // RETR 1's answer starts so (for a message listed)
	}
	var cases []popCase
	add := func(hc []hostileCase, store, size bool, retr string) {
		for _, c := range hc {
			cases = append(cases, popCase{c, store, size, retr})
		}
	}
	add(wrongAnswers[*msrap.QuerySize]("store/querysize", msrap.Protocol, 5), true, false, "")
	add(wrongAnswers[*msrap.Retrieve]("store/retrieve", msrap.Protocol, 4), true, true, "-ERR [SYS/TEMP]")
	add(retrieveCases("store/retrieve"), true, true, "-ERR [SYS/TEMP]")
	add(wrongAnswers[*msrap.Silence]("store/silence", msrap.Protocol, 2), true, true, "+OK")
	add(wrongAnswers[*rnaqp.Authenticate]("agent/authenticate", rnaqp.Protocol, 1), false, false, "")
	add(wrongAnswers[rnaqp.RetrieveAndClear]("agent/retrieveandclear", rnaqp.Protocol, 2), false, false, "")

	// One agent for all: user hN is case N's, gN behaves.
	stores := make([]*hostile.Server, len(cases))
	for i, c := range cases {
		bad := behaves
		if c.store {
			bad = c.bad
		}
		stores[i] = hostile.Start(t, msrap.Protocol, func() hostile.Handler {
			return bad(fakeStore("From: alice@example.org\r\nSubject: other\r\n\r\npop-other\r\n"))
		})
	}
	agent := hostile.Start(t, rnaqp.Protocol, func() hostile.Handler {
		var h hostile.Handler
		return func(cmd wire.Body) hostile.Answer {
			if a, ok := cmd.(*rnaqp.Authenticate); ok && h == nil {
				var i int
				if _, err := fmt.Sscanf(a.Account[1:], "%d", &i); err != nil || i >= len(cases) {
					return refuse(rnaqp.Protocol)
				}
				h = fakeAgent(noteAt(good.Addr, 2, 0))
				if a.Account[0] == 'h' {
					c := cases[i]
					size := 0
					if c.size { // the true size: another one is refused
						size = len("From: alice@example.org\r\nSubject: other\r\n\r\npop-other\r\n")
					}
					h = fakeAgent(noteAt(stores[i].Addr, 1, size))
					if !c.store {
						h = c.bad(h)
					}
				}
			}
			if h == nil {
				return refuse(rnaqp.Protocol)
			}
			return h(cmd)
		}
	})
	e := newEnv(t, "pop")
	e.setConf("timeout", "1")
	e.setConf("rna", agent.Addr)
	// Every store is example.org's, so that their sender is verified.
	routes := "_msrap._tcp.example.org " + good.Addr
	for _, s := range stores {
		routes += " " + s.Addr
	}
	e.setConf("routes", routes+"\n")
	e.setConf("pop3state", filepath.Join(t.TempDir(), "pop3"))
	e.setConf("sessionsperaddr", "0") // every user here comes from 127.0.0.1, side by side
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	_, logs := daemonEnv(t, e.vars, addr, filepath.Join(bin, "im2000-pop3d"), "-l", addr, "-c", "500")

	sideBySide(t, len(cases), func(i int) string { return cases[i].name }, func(t *testing.T, i int) {
		c := cases[i]
		p := dialPOP3(t, addr)
		r := p.login(fmt.Sprintf("h%d", i))
		switch {
		case !c.store:
			if !strings.HasPrefix(r, "-ERR [SYS/TEMP]") {
				t.Errorf("login with a hostile agent: %q", r)
			}
		case c.retr == "":
			if r != fmt.Sprintf("+OK h%d has 0 messages", i) {
				t.Errorf("login with a hostile store (size): %q", r)
			}
		default:
			if r != fmt.Sprintf("+OK h%d has 1 messages", i) {
				t.Fatalf("login: %q", r)
			}
			got := p.cmd("RETR 1")
			if !strings.HasPrefix(got, c.retr) {
				t.Errorf("RETR from a hostile store: %q, want %q", got, c.retr)
			}
			if strings.HasPrefix(got, "+OK") {
				p.multi()
				p.cmd("DELE 1")
			}
		}
		if c.store {
			if q := p.cmd("QUIT"); !strings.HasPrefix(q, "+OK") || strings.HasPrefix(q, "+OK 1 ") {
				t.Errorf("QUIT: %q", q)
			}
		}

		// Meanwhile, another user reads his mail.
		p = dialPOP3(t, addr)
		if r := p.login(fmt.Sprintf("g%d", i)); r != fmt.Sprintf("+OK g%d has 1 messages", i) {
			t.Fatalf("the user whose peers behave: %q", r)
		}
		if r := p.cmd("RETR 1"); !strings.HasPrefix(r, "+OK") || !strings.Contains(p.multi(), "pop-good") {
			t.Errorf("RETR from the store that behaves: %q", r)
		}
		p.cmd("QUIT")
	})
	if n := len(clearFailure.FindAllString(logs.String(), -1)); n < len(cases) {
		t.Errorf("pop3d logged %d clear failures for %d hostile cases:\n%s", n, len(cases), logs.String())
	}
}

// TestHostileRemote: remote im2000-inject and im2000-status against a
// hostile MSOAP server.
func TestHostileRemote(t *testing.T) {
	fakeMSOAP := func(cmd wire.Body) hostile.Answer {
		switch c := cmd.(type) {
		case *msoap.Authenticate:
			return hostile.Respond(msoap.AuthenticateOK{})
		case *msoap.SubmitEnvelope:
			return hostile.Respond(&msoap.SubmitEnvelopeOK{Recipients: make([]uint64, len(c.Recipients)), Lists: make([]uint64, len(c.Lists))})
		case *msoap.SubmitMsgChunk:
			r := &msoap.SubmitMsgChunkOK{}
			if c.IsLast {
				id := msgid.New()
				r.ID = &id
			}
			return hostile.Respond(r)
		case *msoap.Track:
			return hostile.Respond(&msoap.TrackOK{Recipients: []msoap.RecipientStatus{{Recipient: mb("bob", "example.net")}}})
		}
		return refuse(msoap.Protocol)
	}
	client := func(t *testing.T, bad func(hostile.Handler) hostile.Handler) *env {
		srv := hostile.Start(t, msoap.Protocol, func() hostile.Handler { return bad(fakeMSOAP) })
		e := newEnv(t, "alice")
		e.vars = append(e.vars[:0:0], "IM2000_CONF="+e.conf, "IM2000_ACCOUNT=alice", "PATH="+os.Getenv("PATH"), "HOME="+t.TempDir(), "TZ=UTC")
		e.setConf("remote", srv.Addr)
		e.setConf("password", "alicepw")
		e.setConf("timeout", "1")
		e.setConf("sentlog", filepath.Join(t.TempDir(), "sent"))
		return e
	}
	const letter = "Subject: hostile\n\nhello\n"
	inject := func(e *env) result { return e.run(letter, "im2000-inject", "-l", "news", "bob@example.net") }
	status := func(e *env) result {
		log := filepath.Join(t.TempDir(), "sent")
		os.WriteFile(log, []byte(fmt.Sprintf("%s %d hostile\n", msgid.New(), time.Now().Unix())), 0o600)
		e.setConf("sentlog", log)
		return e.run("", "im2000-status")
	}
	t.Run("behaving", func(t *testing.T) {
		e := client(t, behaves)
		if r := inject(e); r.code != 0 {
			t.Fatalf("inject to a store that behaves: exit %d: %s", r.code, r.stderr)
		}
		if r := status(e); r.code != 0 || !strings.Contains(r.stdout, "hostile") {
			t.Fatalf("status from a store that behaves: exit %d: %s%s", r.code, r.stdout, r.stderr)
		}
	})

	var injectCases, statusCases []hostileCase
	injectCases = append(injectCases, wrongAnswers[*msoap.Authenticate]("inject/authenticate", msoap.Protocol, 1)...)
	injectCases = append(injectCases, wrongAnswers[*msoap.SubmitEnvelope]("inject/submitenvelope", msoap.Protocol, 2)...)
	injectCases = append(injectCases, wrongAnswers[*msoap.SubmitMsgChunk]("inject/submitmsgchunk", msoap.Protocol, 3)...)
	injectCases = append(injectCases,
		badAnswer("inject/submitenvelope/too-few-statuses", func(*msoap.SubmitEnvelope) hostile.Answer {
			return hostile.Respond(&msoap.SubmitEnvelopeOK{Lists: []uint64{msoap.Acceptable}})
		}),
		badAnswer("inject/submitenvelope/too-many-statuses", func(*msoap.SubmitEnvelope) hostile.Answer {
			return hostile.Respond(&msoap.SubmitEnvelopeOK{Recipients: []uint64{0, 0}, Lists: []uint64{0}})
		}),
		badAnswer("inject/submitenvelope/too-many-list-statuses", func(*msoap.SubmitEnvelope) hostile.Answer {
			return hostile.Respond(&msoap.SubmitEnvelopeOK{Recipients: []uint64{0}, Lists: []uint64{0, 1, 0}})
		}),
		badAnswer("inject/submitmsgchunk/no-identifier", func(*msoap.SubmitMsgChunk) hostile.Answer {
			return hostile.Respond(&msoap.SubmitMsgChunkOK{})
		}),
	)
	statusCases = append(statusCases, wrongAnswers[*msoap.Authenticate]("status/authenticate", msoap.Protocol, 1)...)
	statusCases = append(statusCases, wrongAnswers[*msoap.Track]("status/track", msoap.Protocol, 4)...)
	each(t, injectCases, func(t *testing.T, c hostileCase) {
		r := inject(client(t, c.bad))
		expectTemporary(t, r)
		if r.stdout != "" {
			t.Errorf("printed an identifier: %q", r.stdout)
		}
	})
	each(t, statusCases, func(t *testing.T, c hostileCase) {
		expectTemporary(t, status(client(t, c.bad)))
	})
}

// listStore is a fake list host that behaves: posts are numbered by a
// clock of its own, and ScanList answers as im2000-retrieved does.
type listStore struct {
	mu      sync.Mutex
	clock   uint64
	posts   map[uint64]msgid.ID
	empties int // answers with nothing new: each ends a scan
}

func (s *listStore) scansEnded() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.empties
}

func (s *listStore) post() msgid.ID {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := msgid.New()
	s.posts[s.clock] = id
	s.clock++
	return id
}

func (s *listStore) handler() hostile.Handler {
	return func(cmd wire.Body) hostile.Answer {
		c, ok := cmd.(*msrap.ScanList)
		if !ok {
			return refuse(msrap.Protocol)
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		r := &msrap.ScanListOK{EndTime: max(s.clock, c.BeginTime)}
		for t := c.BeginTime; t < s.clock; t++ {
			if id, ok := s.posts[t]; ok {
				r.Messages = append(r.Messages, id)
			}
		}
		if len(r.Messages) == 0 {
			s.empties++
		}
		return hostile.Respond(r)
	}
}

// listAgent is a fake reader's agent that behaves and records what it is
// told.
type listAgent struct {
	mu   sync.Mutex
	seen map[msgid.ID]bool
}

func (a *listAgent) handler() hostile.Handler {
	return func(cmd wire.Body) hostile.Answer {
		n, ok := cmd.(*rnasp.Notify)
		if !ok {
			return refuse(rnasp.Protocol)
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		for _, x := range n.Notifications {
			a.seen[x.ID] = true
		}
		return hostile.Respond(&rnasp.NotifyOK{})
	}
}

func (a *listAgent) has(ids ...msgid.ID) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, id := range ids {
		if !a.seen[id] {
			return false
		}
	}
	return true
}

// TestHostileListd: im2000-listd follows a list at a hostile store and
// one at a store that behaves, and notifies an agent that behaves; then
// its agent (moved there by SIGHUP) is hostile. Every pass is cut short
// only where the trouble is, and the posts all arrive in the end.
func TestHostileListd(t *testing.T) {
	store := &listStore{clock: uint64(time.Now().Unix()) + 100, posts: map[uint64]msgid.ID{}}
	good := hostile.Start(t, msrap.Protocol, store.handler)
	quiet := fakeStore("")
	bad := hostile.Start(t, msrap.Protocol, func() hostile.Handler { return quiet })
	agent := &listAgent{seen: map[msgid.ID]bool{}}
	goodAgent := hostile.Start(t, rnasp.Protocol, agent.handler)
	badAgent := hostile.Start(t, rnasp.Protocol, agent.handler)

	e := newEnv(t, "reader")
	e.setConf("me", "example.net")
	e.setConf("timeout", "1")
	e.setConf("rnasp", goodAgent.Addr)
	e.setConf("listfile", "golang "+bad.Addr+"\ngolang "+good.Addr+"\n")
	e.setConf("listdstate", filepath.Join(t.TempDir(), "listd"))
	e.setConf("listinterval", "3600") // passes on SIGHUP only
	listd, logs := daemonEnv(t, e.vars, "", filepath.Join(bin, "im2000-listd"))
	await(t, 5*time.Second, "the first pass", func() bool { return good.Commands() > 0 })
	count := func(re *regexp.Regexp) int {
		if re == nil {
			return 0
		}
		return len(re.FindAllString(logs.String(), -1))
	}

	// pass makes a post at the store that behaves, signals, and waits
	// until the pass is over (the scan there, the last, ended), the agent
	// has the post and, with failed, the log shows one more failure
	// matching failed.
	pass := func(t *testing.T, failed *regexp.Regexp) {
		t.Helper()
		before, ended := count(failed), store.scansEnded()
		id := store.post()
		start := time.Now()
		listd.Process.Signal(syscall.SIGHUP)
		for store.scansEnded() == ended || !agent.has(id) || failed != nil && count(failed) <= before {
			if time.Since(start) > caseLimit {
				t.Fatalf("within %v: post notified %v, failures %d (want more than %d); log:\n%s", caseLimit, agent.has(id), count(failed), before, logs.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	scanFailed := regexp.MustCompile(`warning: scan failed: golang at ` + regexp.QuoteMeta(bad.Addr) + `: .*(` + clearFailure.String() + `).*\(trying again next time\)`)
	var cases []hostileCase
	cases = append(cases, wrongAnswers[*msrap.ScanList]("store/scanlist", msrap.Protocol, 1)...)
	cases = append(cases, badAnswer("store/scanlist/endtime-before-begintime", func(c *msrap.ScanList) hostile.Answer {
		return hostile.Respond(&msrap.ScanListOK{Messages: []msgid.ID{msgid.New()}, EndTime: c.BeginTime - 1})
	}))
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			bad.Set(func() hostile.Handler { return c.bad(quiet) })
			pass(t, scanFailed)
		})
	}
	t.Run("store/scanlist/never-ending", func(t *testing.T) {
		bad.Set(func() hostile.Handler {
			return hostile.TargetFunc(quiet, func(c *msrap.ScanList) hostile.Answer {
				return hostile.Respond(&msrap.ScanListOK{Messages: []msgid.ID{msgid.New()}, EndTime: c.BeginTime + 1})
			})
		})
		before := bad.Commands()
		pass(t, nil)
		if n := bad.Commands() - before; n != 100 {
			t.Errorf("%d ScanList round trips in a pass, want 100", n)
		}
	})
	bad.Set(func() hostile.Handler { return quiet })

	// The agent: moved by SIGHUP, which says so.
	e.setConf("rnasp", badAgent.Addr)
	pass(t, regexp.MustCompile(`info: SIGHUP: rnasp: "`+regexp.QuoteMeta(goodAgent.Addr)+`" -> "`+regexp.QuoteMeta(badAgent.Addr)+`"`))
	notifyFailed := regexp.MustCompile(`warning: scan failed: golang at ` + regexp.QuoteMeta(good.Addr) + `: agent ` + regexp.QuoteMeta(badAgent.Addr) + `: .*(` + clearFailure.String() + `)`)
	cases = wrongAnswers[*rnasp.Notify]("agent/notify", rnasp.Protocol, 1)
	cases = append(cases,
		badAnswer("agent/notify/too-many-results", func(c *rnasp.Notify) hostile.Answer {
			return hostile.Respond(&rnasp.NotifyOK{Results: make([]uint64, len(c.Notifications)+1)})
		}),
		badAnswer("agent/notify/too-few-results", func(c *rnasp.Notify) hostile.Answer {
			return hostile.Respond(&rnasp.NotifyOK{Results: make([]uint64, len(c.Notifications)-1)})
		}),
	)
	var missed []msgid.ID
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			badAgent.Set(func() hostile.Handler { return c.bad(agent.handler()) })
			before := count(notifyFailed)
			missed = append(missed, store.post(), store.post()) // two, so that one result is too few
			listd.Process.Signal(syscall.SIGHUP)
			await(t, caseLimit, "the failure logged", func() bool { return count(notifyFailed) > before })
		})
	}
	// Back to the agent that behaves: what the hostile one did not take
	// arrives now.
	e.setConf("rnasp", goodAgent.Addr)
	pass(t, regexp.MustCompile(`info: SIGHUP: rnasp: "`+regexp.QuoteMeta(badAgent.Addr)+`" -> "`+regexp.QuoteMeta(goodAgent.Addr)+`"`))
	if !agent.has(missed...) {
		t.Errorf("posts the hostile agent did not take are lost")
	}
}
