package tests

import (
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"im2000/lib/locate/locatetest"
)

// TestSmarthostNoDNSAnswer: the hostile review's attack (issue 20). The
// smarthost takes only a domain shown to publish no IM2000 service; a
// lookup that DNS did not answer is noservice, retried, and never goes to
// SMTP. nsd serves bob.test, which publishes RNASP in both forms (its TLS
// form on a closed port, its cleartext one bob's agent), and carol.test,
// which exists without SRV records; a relay in front of nsd loses SRV
// questions, as a resolver outage or an attacker who drops datagrams does.
//
//  1. Every SRV question lost: bob and carol stay noservice attempt after
//     attempt, and the smarthost is never connected to (before the fix,
//     bob's private mail went to it and ended "smtp").
//  2. Only the TLS form's questions lost: bob's agent, found by the
//     cleartext form, is notified; carol, whose cleartext form is answered
//     NXDOMAIN while her TLS form is not answered at all, is still not
//     handed off.
//  3. Nothing lost: carol's domain is shown to have no service, and she is
//     handed to the smarthost, once.
func TestSmarthostNoDNSAnswer(t *testing.T) {
	bob := newAgentHostFor(t, "listener", "bob.test", "", "bob")
	_, bobPort, _ := net.SplitHostPort(bob.rnasp)
	closed := freePort(t)
	dns := startGatewayNSD(t, map[string]string{
		"bob.test":   fmt.Sprintf("@ IN A 127.0.0.1\n_rnasp._tcp IN SRV 0 0 %s agent.bob.test.\n_rnasps._tcp IN SRV 0 0 %d agent.bob.test.\nagent IN A 127.0.0.1\n", bobPort, closed),
		"carol.test": "@ IN A 127.0.0.1\n",
	})
	relay := locatetest.StartRelay(t, dns, 0)
	relay.Lose(func(q dnsmessage.Question) bool { return q.Type == dnsmessage.TypeSRV })
	sink, sunk := startHandOffSink(t, false)
	h := newStoreHost(t, "listener", func(e *env) {
		e.setConf("resolvers", relay.Addr)
		e.setConf("smarthost", sink)
		e.setConf("retrybase", "1")
		e.setConf("retrymax", "2")
		// Room for an unanswered TLS question (the locator's 5 s) and
		// then the cleartext one within one attempt.
		e.setConf("timeout", "12")
	})
	h.setConf("storelocation", h.msrap)
	_, nlog := daemonEnv(t, h.vars, "", filepath.Join(bin, "im2000-notifyd"))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("notifyd:\n%s", nlog.String())
		}
	})
	bobID := h.inject("From: alice@example.org\nTo: bob@bob.test\nSubject: private\n\nfor bob's IM2000 agent only\n", "bob@bob.test")
	carolID := h.inject("From: alice@example.org\nTo: carol@carol.test\nSubject: over SMTP\n\nhello carol\n", "carol@carol.test")
	state := func(id, rcpt string) string { return recipientStates(t, h.store, "alice", id)[rcpt] }
	attempts := func(id, rcpt string) int { return int(recipientStatuses(t, h.store, "alice", id)[rcpt].Attempts) }
	noSink := func(phase string) {
		t.Helper()
		if datas, conns := sunk.got(); conns != 0 || len(datas) != 0 {
			t.Fatalf("%s: the smarthost got %d connections, %d messages; bob %s, carol %s", phase, conns, len(datas),
				state(bobID, "bob@bob.test"), state(carolID, "carol@carol.test"))
		}
	}

	// 1. Every SRV question lost.
	await(t, 90*time.Second, "two attempts each with SRV questions lost", func() bool {
		noSink("SRV questions lost")
		return attempts(bobID, "bob@bob.test") >= 2 && attempts(carolID, "carol@carol.test") >= 2
	})
	noSink("SRV questions lost")
	if st := state(bobID, "bob@bob.test"); st != "noservice/unread" {
		t.Errorf("bob with SRV questions lost: %s, want noservice/unread", st)
	}
	if st := state(carolID, "carol@carol.test"); st != "noservice/unread" {
		t.Errorf("carol with SRV questions lost: %s, want noservice/unread", st)
	}
	if log := nlog.String(); !strings.Contains(log, "unreachable: bob.test: no DNS answer") {
		t.Errorf("notifyd does not say that DNS did not answer for bob.test:\n%s", log)
	}
	if spooled(bob, "bob") != 0 {
		t.Error("bob's agent notified while its SRV questions were lost")
	}

	// 2. Only the TLS form's SRV questions lost.
	relay.Lose(func(q dnsmessage.Question) bool {
		return q.Type == dnsmessage.TypeSRV && strings.HasPrefix(strings.ToLower(q.Name.String()), "_rnasps.")
	})
	before := attempts(carolID, "carol@carol.test")
	await(t, 60*time.Second, "bob notified by cleartext, carol tried twice more", func() bool {
		noSink("TLS SRV questions lost")
		return spooled(bob, "bob") == 1 && attempts(carolID, "carol@carol.test") >= before+2
	})
	noSink("TLS SRV questions lost")
	if st := state(bobID, "bob@bob.test"); st != "notifying/unread" {
		t.Errorf("bob with his cleartext form answered: %s, want notifying/unread", st)
	}
	if st := state(carolID, "carol@carol.test"); st != "noservice/unread" {
		t.Errorf("carol with her TLS form unanswered: %s, want noservice/unread", st)
	}

	// 3. Nothing lost: carol.test is shown to publish no IM2000 service.
	relay.Lose(nil)
	await(t, 60*time.Second, "carol handed to the smarthost", func() bool { return state(carolID, "carol@carol.test") == "smtp/unread" })
	datas, _ := sunk.got()
	if len(datas) != 1 {
		t.Errorf("the smarthost got %d messages, want carol's one", len(datas))
	}
	data := strings.Join(datas, "")
	if !strings.Contains(data, "hello carol") || strings.Contains(data, "for bob's IM2000 agent only") {
		t.Errorf("the smarthost got:\n%s", data)
	}
	if st := state(bobID, "bob@bob.test"); st != "notifying/unread" {
		t.Errorf("bob after DNS came back: %s, want notifying/unread", st)
	}
}
