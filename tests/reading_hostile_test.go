package tests

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"im2000/lib/inbox"
	"im2000/lib/wire"
	"im2000/lib/wire/msrap"
	"im2000/lib/wire/rnaqp"
	"im2000/tests/hostile"
)

// Bounded reading against the attacks of a hostile review: stores that
// trickle, hang up after each page or outlast a POP3 session; one store
// spelled many ways; headers of a million empty fields; two fetch runs
// at once; messages gone or refused.

// pacedStore serves msg in pages of page octets, each answer after delay;
// with hangUp it closes the session after each answer. It counts the
// retrievals.
func pacedStore(msg string, page int, delay time.Duration, hangUp bool, retrievals *atomic.Int64) func() hostile.Handler {
	return func() hostile.Handler {
		return func(cmd wire.Body) hostile.Answer {
			time.Sleep(delay)
			var a hostile.Answer
			switch c := cmd.(type) {
			case *msrap.Retrieve:
				retrievals.Add(1)
				off := min(int(c.Offset), len(msg))
				a = hostile.Respond(&msrap.RetrieveOK{Data: []byte(msg[off:min(off+page, len(msg))]), Size: uint64(len(msg))})
			case *msrap.QuerySize:
				a = hostile.Respond(&msrap.QuerySizeOK{Size: uint64(len(msg))})
			case *msrap.Silence:
				a = hostile.Respond(msrap.SilenceOK{})
			default:
				a = refuse(msrap.Protocol)
			}
			a.Close = hangUp
			return a
		}
	}
}

// TestFetchSlowStores: a store trickling 1-octet pages just within the
// timeout is refused at its first page; one sending honest pages too
// slowly is cut off at the retrieval's time (timeout + size at 64 KiB/s);
// one hanging up after every page is dialled again once, not once a page.
// Each costs fetch a bounded time, not the message's size in timeouts.
func TestFetchSlowStores(t *testing.T) {
	const timeout = time.Second
	big := "From: alice@example.org\r\n\r\n" + strings.Repeat("y", 2*inbox.MinRate) // 2 s at the minimum rate, 9 pages
	for _, c := range []struct {
		name   string
		msg    string
		page   int
		delay  time.Duration
		hangUp bool
		most   time.Duration // what fetch may take, at most
		want   string        // in fetch's log
	}{
		{"one-octet-pages", "From: alice@example.org\r\n\r\nabcdef\r\n", 1, 8 * timeout / 10, false, 2 * timeout,
			"a page of 1 octets at offset 0 of 35"},
		{"honest-but-slow", big, inbox.MinPage, 8 * timeout / 10, false, 5 * (timeout + 2*time.Second) / 4,
			"took longer than it may"},
		{"hangs-up-each-page", big, inbox.MinPage, 0, true, 2 * timeout,
			"0 delivered, 1 kept for later"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var n atomic.Int64
			store := hostile.Start(t, msrap.Protocol, pacedStore(c.msg, c.page, c.delay, c.hangUp, &n))
			agent := hostile.Start(t, rnaqp.Protocol, agentOnce(noteAt(store.Addr, 1, len(c.msg))))
			e := readerEnv(t, agent.Addr, store.Addr)
			e.setConf("timeout", "1")
			maildir := filepath.Join(t.TempDir(), "Maildir")
			start := time.Now()
			r := e.run("", "im2000-fetch", "-d", maildir)
			took := time.Since(start)
			t.Logf("took %v, %d pages, %d sessions: %s", took, n.Load(), store.Sessions(), r.stderr)
			if r.code != 111 || !strings.Contains(r.stderr, c.want) || len(maildirMessages(t, maildir)) != 0 {
				t.Errorf("exit %d, log without %q", r.code, c.want)
			}
			if took > c.most {
				t.Errorf("fetch took %v, over %v", took, c.most)
			}
			if c.hangUp && store.Sessions() != 2 {
				t.Errorf("%d sessions, want 2 (one reopening a run)", store.Sessions())
			}
		})
	}
}

// TestFetchOneStoreManySpellings: 24 notifications at one tarpit, its
// address repeated 1 to 24 times, or written IPv4-mapped: one store, one
// chance, one session, one timeout.
func TestFetchOneStoreManySpellings(t *testing.T) {
	pit := silentStore(t)
	ap := netip.MustParseAddrPort(pit.Addr)
	mapped := netip.AddrPortFrom(netip.AddrFrom16(ap.Addr().As16()), ap.Port())
	var notes []rnaqp.NotificationAndLocalData
	for i := 1; i <= 24; i++ {
		n := noteAt(pit.Addr, byte(i), 10)
		n.Notification.StoreClear.Literals = nil
		for k := 0; k < i; k++ {
			n.Notification.StoreClear.Literals = append(n.Notification.StoreClear.Literals, []wire.AddrPort{ap, mapped}[k%2])
		}
		notes = append(notes, n)
	}
	agent := hostile.Start(t, rnaqp.Protocol, agentOnce(notes...))
	e := readerEnv(t, agent.Addr, pit.Addr)
	e.setConf("timeout", "2")
	maildir := filepath.Join(t.TempDir(), "Maildir")
	start := time.Now()
	r := e.run("", "im2000-fetch", "-d", maildir)
	took := time.Since(start)
	if took > 5*time.Second || pit.Sessions() != 1 || !strings.Contains(r.stderr, "0 delivered, 24 kept for later") {
		t.Errorf("24 notifications at one tarpit: %v, %d sessions, exit %d: %s", took, pit.Sessions(), r.code, r.stderr)
	}
}

// manyFields is a message whose header is 1 MiB of empty fields (349,000
// of them): 156 MiB of heap when a reader parsed it into a map.
var manyFields = strings.Repeat("a:\n", 349000) + "\nbody\n"

// TestFetchManyFieldsRSS: four such stores at once keep fetch under the
// RSS limit, and the messages are delivered.
func TestFetchManyFieldsRSS(t *testing.T) {
	var stores []string
	var notes []rnaqp.NotificationAndLocalData
	for i := range 4 {
		s := hostile.Start(t, msrap.Protocol, func() hostile.Handler { return fakeStore(manyFields) })
		stores = append(stores, s.Addr)
		notes = append(notes, noteAt(s.Addr, byte(i+1), len(manyFields)))
	}
	agent := hostile.Start(t, rnaqp.Protocol, agentOnce(notes...))
	e := readerEnv(t, agent.Addr, stores...)
	maildir := filepath.Join(t.TempDir(), "Maildir")
	r, rss := e.runRSS("im2000-fetch", "-d", maildir)
	t.Logf("fetch, 4 stores of 349,000 empty fields each: peak RSS %d MiB", rss>>20)
	if r.code != 0 || len(maildirMessages(t, maildir)) != 4 {
		t.Errorf("exit %d, %d messages: %s", r.code, len(maildirMessages(t, maildir)), r.stderr)
	}
	if rss >= rssLimit {
		t.Errorf("fetch's peak RSS %d MiB, over %d MiB", rss>>20, rssLimit>>20)
	}
}

// TestPOP3ManyFieldsRSS: the same message by RETR keeps pop3d under the
// RSS limit.
func TestPOP3ManyFieldsRSS(t *testing.T) {
	store := hostile.Start(t, msrap.Protocol, func() hostile.Handler { return fakeStore(manyFields) })
	agent := hostile.Start(t, rnaqp.Protocol, agentOnce(noteAt(store.Addr, 1, len(manyFields))))
	e := readerEnv(t, agent.Addr, store.Addr)
	p := startPOP3Pipe(t, e)
	p.cmd1("USER bob")
	p.cmd1("PASS bobpw")
	fmt.Fprintf(p.in, "RETR 1\r\n")
	first, lines := p.line(), 0
	for l := first; l != "."; l = p.line() {
		lines++
	}
	rss := p.quit()
	t.Logf("pop3d RETR of 349,000 empty fields: %s, %d lines; peak RSS %d MiB", first, lines, rss>>20)
	if !strings.HasPrefix(first, "+OK") || lines < 349000 {
		t.Errorf("RETR: %q, %d lines", first, lines)
	}
	if rss >= rssLimit {
		t.Errorf("pop3d's peak RSS %d MiB, over %d MiB", rss>>20, rssLimit>>20)
	}
}

// TestPOP3RetrEndsWithSession: a RETR from a store sending honest pages
// slowly ends at the session's lifetime, not at the retrieval's own time;
// the maildrop is free then: a second login right after succeeds.
func TestPOP3RetrEndsWithSession(t *testing.T) {
	msg := "From: alice@example.org\r\n\r\n" + strings.Repeat("y", 20*inbox.MinPage) // 20 pages, 5 s at the minimum rate
	var n atomic.Int64
	store := hostile.Start(t, msrap.Protocol, pacedStore(msg, inbox.MinPage, 800*time.Millisecond, false, &n))
	agent := hostile.Start(t, rnaqp.Protocol, func() hostile.Handler { return fakeAgent(noteAt(store.Addr, 1, len(msg))) })
	e := readerEnv(t, agent.Addr, store.Addr)
	e.setConf("timeout", "1")
	e.setConf("sessionlifetime", "3")
	p := startPOP3Pipe(t, e)
	start := time.Now()
	p.cmd1("USER bob")
	if r := p.cmd1("PASS bobpw"); r != "+OK bob has 1 messages" {
		t.Fatalf("login: %q", r)
	}
	r := p.cmd1("RETR 1")
	took := time.Since(start)
	if !strings.HasPrefix(r, "-ERR") || took > 4500*time.Millisecond {
		t.Errorf("RETR answered %q after %v, with a session lifetime of 3 s", r, took)
	}
	time.Sleep(time.Until(start.Add(3500 * time.Millisecond)))
	q := startPOP3Pipe(t, e)
	q.cmd1("USER bob")
	if r := q.cmd1("PASS bobpw"); r != "+OK bob has 1 messages" {
		t.Errorf("a second login after the first session's lifetime: %q", r)
	}
	q.quit()
	p.in.Close()
	p.cmd.Wait()
	checkLog(t, "im2000-pop3d", p.log.String())
	t.Logf("RETR after %v: %q; %d pages served", took, r, n.Load())
}

// TestPOP3RefusedOnce: a refused message is gone from the session: a
// second RETR, TOP, LIST or RSET does not bring it back, and its store is
// not asked again.
func TestPOP3RefusedOnce(t *testing.T) {
	var n atomic.Int64
	store := hostile.Start(t, msrap.Protocol, func() hostile.Handler {
		flood := floodStore(1 << 62)
		return func(cmd wire.Body) hostile.Answer {
			if _, ok := cmd.(*msrap.Retrieve); ok {
				n.Add(1)
			}
			return flood(cmd)
		}
	})
	agent := hostile.Start(t, rnaqp.Protocol, agentOnce(noteAt(store.Addr, 1, 1<<62)))
	e := readerEnv(t, agent.Addr, store.Addr)
	p := startPOP3Pipe(t, e)
	p.cmd1("USER bob")
	p.cmd1("PASS bobpw")
	if r := p.cmd1("RETR 1"); !strings.HasPrefix(r, "-ERR [SYS/TEMP] the store broke the rules") {
		t.Errorf("RETR of a flood: %q", r)
	}
	p.cmd1("RSET")
	for _, c := range []string{"RETR 1", "TOP 1 0", "LIST 1"} {
		if r := p.cmd1(c); r != "-ERR no such message" {
			t.Errorf("%s after the refusal: %q", c, r)
		}
	}
	if r := p.cmd1("STAT"); r != "+OK 0 0" {
		t.Errorf("STAT after the refusal: %q", r)
	}
	p.quit()
	if n.Load() != 1 {
		t.Errorf("the store was asked %d times, want once", n.Load())
	}
}

// TestFetchTwoRunsAtOnce: a second fetch run while one is running exits
// 111 at once, saying why, and nothing is delivered twice.
func TestFetchTwoRunsAtOnce(t *testing.T) {
	msg := "From: alice@example.org\r\n\r\nonce\r\n"
	var n atomic.Int64
	store := hostile.Start(t, msrap.Protocol, pacedStore(msg, inbox.MinPage, 300*time.Millisecond, false, &n))
	agent := hostile.Start(t, rnaqp.Protocol, agentOnce(noteAt(store.Addr, 1, len(msg))))
	e := readerEnv(t, agent.Addr, store.Addr)
	maildir := filepath.Join(t.TempDir(), "Maildir")
	e.run("", "im2000-fetch", "-d", maildir, "--summary") // the notification is pending now
	done := make(chan result, 2)
	for range 2 {
		go func() { done <- e.run("", "im2000-fetch", "-d", maildir) }()
	}
	r1, r2 := <-done, <-done
	if r1.code == 111 {
		r1, r2 = r2, r1
	}
	if r1.code != 0 || r2.code != 111 || !strings.Contains(r2.stderr, "another im2000-fetch is running for this Maildir") {
		t.Errorf("two runs at once: exit %d (%s) and %d (%s)", r1.code, r1.stderr, r2.code, r2.stderr)
	}
	if m := maildirMessages(t, maildir); len(m) != 1 {
		t.Errorf("%d messages delivered, want 1", len(m))
	}
	if r := e.run("", "im2000-fetch", "-d", maildir); r.code != 0 || len(maildirMessages(t, maildir)) != 1 {
		t.Errorf("the run after: exit %d: %s", r.code, r.stderr)
	}
}

// TestFetchGone: a message its store no longer has is counted as gone,
// not as delivered, and dropped.
func TestFetchGone(t *testing.T) {
	store := hostile.Start(t, msrap.Protocol, func() hostile.Handler {
		return func(cmd wire.Body) hostile.Answer {
			return hostile.Answer{Frame: wire.MarshalResponse(false, msrap.ErrorNoSuchMessage, wire.Null{})}
		}
	})
	agent := hostile.Start(t, rnaqp.Protocol, agentOnce(noteAt(store.Addr, 1, 40)))
	e := readerEnv(t, agent.Addr, store.Addr)
	maildir := filepath.Join(t.TempDir(), "Maildir")
	r := e.run("", "im2000-fetch", "-d", maildir)
	if r.code != 0 || !strings.Contains(r.stderr, "0 delivered, 0 kept for later, 0 dropped, 1 gone from their stores") {
		t.Errorf("a gone message: exit %d: %s", r.code, r.stderr)
	}
	if r := e.run("", "im2000-fetch", "-d", maildir, "--summary"); r.stdout != "" {
		t.Errorf("the gone entry is still pending: %q", r.stdout)
	}
}
