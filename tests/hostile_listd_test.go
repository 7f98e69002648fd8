// The hostile-peer test of im2000-listd: a list store and an agent that
// behave (listStore, listAgent), and TestHostileListd.

package tests

import (
	"path/filepath"
	"regexp"
	"sync"
	"syscall"
	"testing"
	"time"

	"im2000/lib/msgid"
	"im2000/lib/wire"
	"im2000/lib/wire/msrap"
	"im2000/lib/wire/rnasp"
	"im2000/tests/hostile"
)

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
