package tests

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
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
