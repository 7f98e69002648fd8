package tests

import (
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"im2000/lib/store"
	"im2000/lib/wire"
	"im2000/lib/wire/rnasp"
	"im2000/tests/hostile"
)

// TestHostileAgents: notifyd against agents that answer Notify in every
// wrong way a peer on the Internet may (another response alternative with
// noerror, garbage, an oversize length, a command, a close, silence, too
// many or too few results, results out of range, error statuses), one
// hostile agent per domain, beside a working agent. Each hostile
// destination's recipient ends in a temporary state that says what
// happened (a bad answer protocolerror, silence or a close noserver), the
// working one is notified, notifyd keeps running and never panics (the
// test helpers fail on any alert).
func TestHostileAgents(t *testing.T) {
	type hcase struct {
		name string
		ans  func(n *rnasp.Notify) hostile.Answer
		want store.Notification
	}
	var cases []hcase
	for _, c := range hostile.Wrong(rnasp.Protocol, 1) {
		want := store.ProtocolError
		if c.Name == "close" || c.Name == "never" || c.Name == "cut-short" {
			want = store.NoServer // no answer at all, or none complete in time
		}
		ans := c.Answer
		cases = append(cases, hcase{c.Name, func(*rnasp.Notify) hostile.Answer { return ans }, want})
	}
	results := func(k int) []uint64 { return make([]uint64, k) }
	cases = append(cases,
		hcase{"too-many-results", func(n *rnasp.Notify) hostile.Answer {
			return hostile.Respond(&rnasp.NotifyOK{Results: results(len(n.Notifications) + 1)})
		}, store.ProtocolError},
		hcase{"too-few-results", func(n *rnasp.Notify) hostile.Answer {
			return hostile.Respond(&rnasp.NotifyOK{Results: results(len(n.Notifications) + 1)[:1]})
		}, store.ProtocolError},
		hcase{"result-out-of-range", func(n *rnasp.Notify) hostile.Answer {
			r := results(len(n.Notifications))
			r[0] = 7
			return hostile.Respond(&rnasp.NotifyOK{Results: r})
		}, store.ProtocolError},
		hcase{"internal-problem", func(*rnasp.Notify) hostile.Answer {
			return hostile.Answer{Frame: wire.MarshalResponse(false, rnasp.ErrorInternalProblem, wire.Null{})}
		}, store.ProtocolError},
		hcase{"busy", func(*rnasp.Notify) hostile.Answer {
			return hostile.Answer{Frame: wire.MarshalResponse(true, rnasp.ErrorServiceShutdown, wire.Null{})}
		}, store.NoServer},
	)

	bob := newAgentHostFor(t, "listener", "example.net", "", "bob")
	routes := map[string]string{"example.net": bob.rnasp}
	rcpts := []string{"bob@example.net"}
	for i, c := range cases {
		ans := c.ans
		srv := hostile.Start(t, rnasp.Protocol, func() hostile.Handler {
			return func(cmd wire.Body) hostile.Answer {
				if n, ok := cmd.(*rnasp.Notify); ok {
					return ans(n)
				}
				return hostile.Answer{Close: true}
			}
		})
		domain := fmt.Sprintf("h%d.example", i)
		routes[domain] = srv.Addr
		rcpts = append(rcpts, "victim@"+domain, "other@"+domain) // two, so one result is too few
	}
	e, a := queueStore(t, routes, map[string]string{"timeout": "3", "retrybase": "600", "concurrency": "40"})
	nd, logs := daemonEnv(t, e.vars, "", filepath.Join(bin, "im2000-notifyd"))
	id := commit(t, a, rcpts...)
	await(t, 5*time.Second, "bob's notification beside the hostile agents", func() bool { return spooled(bob, "bob") == 1 })
	await(t, 15*time.Second, "every hostile destination's outcome", func() bool {
		st, _ := a.Status(id)
		for _, r := range st.Recipients {
			if r.Attempts == 0 {
				return false
			}
		}
		return true
	})
	st, _ := a.Status(id)
	if st.Recipients[0].Notification != store.Notifying {
		t.Errorf("bob: %v", st.Recipients[0].Notification)
	}
	for i, c := range cases {
		for _, r := range st.Recipients[1+2*i : 3+2*i] {
			if r.Notification != c.want {
				t.Errorf("%s: %v, want %v", c.name, r.Notification, c.want)
			}
			if r.Notification.Final() || r.Next.IsZero() {
				t.Errorf("%s: %v is not retried (next %v)", c.name, r.Notification, r.Next)
			}
		}
	}
	// Still running, and still serving: a new message goes at once.
	if err := nd.Process.Signal(syscall.Signal(0)); err != nil {
		t.Fatalf("notifyd is gone: %v\n%s", err, logs)
	}
	commit(t, a, "bob@example.net")
	await(t, 5*time.Second, "a later message to bob", func() bool { return spooled(bob, "bob") == 2 })
	if strings.Contains(logs.String(), "panic") || strings.Contains(logs.String(), ": alert: ") {
		t.Errorf("notifyd logged a panic:\n%s", logs)
	}
}
