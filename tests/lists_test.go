package tests

import (
	"bytes"
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"im2000/lib/agent"
	"im2000/lib/msgid"
	"im2000/lib/wire"
	"im2000/lib/wire/msrap"
	"im2000/lib/wire/rnasp"
	"im2000/tests/hostile"
)

// reader is one list reader: an agent, a listd, a Maildir.
type reader struct {
	name    string
	agent   *agentHost
	env     *env // listd's and fetch's configuration
	maildir string
	mu      sync.Mutex
	listd   *exec.Cmd
}

func (r *reader) startListd(t *testing.T) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.listd, _ = daemonEnv(t, r.env.vars, "", filepath.Join(bin, "im2000-listd"))
}

func (r *reader) killListd() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.listd.Process.Kill()
	r.listd.Wait()
}

var postToken = regexp.MustCompile(`post-\w+`)

func (r *reader) posts(t *testing.T) []string {
	var out []string
	for _, m := range maildirMessages(t, r.maildir) {
		out = append(out, postToken.FindString(m))
	}
	return out
}

// TestListsWithoutSubscriptions: a list hosted on one store, three readers
// on their own agents, posts from an author who may post and one who may
// not; listd killed and restarted at random; every reader ends up with
// exactly the allowed posts, once each. Then a reader stops following.
func TestListsWithoutSubscriptions(t *testing.T) {
	h := newStoreHost(t, "tcpserver", func(e *env) { e.setConf("lists/golang", "alice") })
	var readers []*reader
	for i := 1; i <= 3; i++ {
		name := fmt.Sprintf("r%d", i)
		domain := name + ".example"
		ag := newAgentHostFor(t, "listener", domain, "", name)
		e, maildir := fetchEnv(t, name, ag)
		e.setConf("me", domain)
		e.setConf("rnasp", ag.rnasp)
		e.setConf("listfile", "# lists I read\ngolang "+h.msrap+"\n")
		e.setConf("listdstate", filepath.Join(t.TempDir(), "listd"))
		e.setConf("listinterval", "1")
		r := &reader{name: name, agent: ag, env: e, maildir: maildir}
		r.startListd(t)
		readers = append(readers, r)
	}
	time.Sleep(500 * time.Millisecond) // they start following "now"

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // kill listd at random points
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Duration(300+rand.IntN(700)) * time.Millisecond):
			}
			r := readers[rand.IntN(len(readers))]
			r.killListd()
			r.startListd(t)
		}
	}()
	for _, r := range readers {
		wg.Add(1)
		go func() { // and fetch, over and over
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				r.env.run("", "im2000-fetch", "-d", r.maildir)
				time.Sleep(200 * time.Millisecond)
			}
		}()
	}

	// alice may post; bob may not, locally or over MSOAP.
	var allowed []string
	for i := 0; i < 5; i++ {
		tok := fmt.Sprintf("post-alice%d", i)
		h.inject("Subject: "+tok+"\n\n"+tok+"\n", "-l", "golang")
		allowed = append(allowed, tok)
		time.Sleep(300 * time.Millisecond)
	}
	bobLocal := *h.env
	bobLocal.vars = append(append([]string{}, h.vars...), "IM2000_ACCOUNT=bob")
	if r := bobLocal.run("Subject: post-bob0\n\npost-bob0\n", "im2000-inject", "-l", "golang"); r.code != 100 {
		t.Fatalf("bob posting locally: exit %d, %s", r.code, r.stderr)
	}
	bobRemote := newEnv(t, "bob")
	bobRemote.setConf("remote", h.msoap)
	bobRemote.setConf("password", "bobpw")
	if r := bobRemote.run("Subject: post-bob1\n\npost-bob1\n", "im2000-inject", "-l", "golang"); r.code != 100 || !strings.Contains(r.stderr, "refuses list golang") {
		t.Fatalf("bob posting over MSOAP: exit %d, %s", r.code, r.stderr)
	}

	want := strings.Join(allowed, " ")
	done := func(r *reader, n int) bool { return len(r.posts(t)) >= n }
	await(t, 60*time.Second, "every reader has the five posts", func() bool {
		return done(readers[0], 5) && done(readers[1], 5) && done(readers[2], 5)
	})
	close(stop)
	wg.Wait()
	for _, r := range readers {
		got := r.posts(t)
		slices.Sort(got)
		if strings.Join(got, " ") != want {
			t.Errorf("%s has %v, want each of %v once", r.name, got, allowed)
		}
	}

	// r3 stops following; the others get the next post, r3 does not.
	for _, r := range readers {
		if r.listd.ProcessState != nil {
			r.startListd(t)
		}
	}
	r3 := readers[2]
	r3.env.setConf("listfile", "# nothing any more\n")
	r3.mu.Lock()
	r3.listd.Process.Signal(syscall.SIGHUP)
	r3.mu.Unlock()
	time.Sleep(300 * time.Millisecond)
	h.inject("Subject: post-alice5\n\npost-alice5\n", "-l", "golang")
	await(t, 30*time.Second, "r1 and r2 get the sixth post", func() bool {
		for _, r := range readers[:2] {
			r.env.run("", "im2000-fetch", "-d", r.maildir)
		}
		return done(readers[0], 6) && done(readers[1], 6)
	})
	time.Sleep(2 * time.Second)
	r3.env.run("", "im2000-fetch", "-d", r3.maildir)
	if n := len(r3.posts(t)); n != 5 {
		t.Errorf("r3 stopped following but has %d posts", n)
	}

	// The store keeps no trace of who reads.
	filepath.Walk(h.store, func(p string, fi os.FileInfo, err error) error {
		if err != nil || !fi.Mode().IsRegular() {
			return nil
		}
		b, _ := os.ReadFile(p)
		for _, r := range readers {
			if bytes.Contains(b, []byte(r.name+".example")) || bytes.Contains(b, []byte(r.name+"@")) {
				t.Errorf("%s mentions reader %s", p, r.name)
			}
		}
		return nil
	})
}

// TestListdSIGHUP: listd re-reads its settings on SIGHUP. A list at a
// domain without a route fails; the route added afterwards is used after
// a SIGHUP, with no restart, and the log says what changed. A setting that
// does not parse leaves the ones in force.
func TestListdSIGHUP(t *testing.T) {
	store := &listStore{clock: uint64(time.Now().Unix()) + 100, posts: map[uint64]msgid.ID{}}
	srv := hostile.Start(t, msrap.Protocol, store.handler)
	agent := &listAgent{seen: map[msgid.ID]bool{}}
	ag := hostile.Start(t, rnasp.Protocol, agent.handler)
	dns, err := net.ListenPacket("udp", "127.0.0.1:0") // a resolver that never answers
	if err != nil {
		t.Fatal(err)
	}
	defer dns.Close()

	e := newEnv(t, "reader")
	e.setConf("me", "example.net")
	e.setConf("timeout", "1")
	e.setConf("rnasp", ag.Addr)
	e.setConf("resolvers", dns.LocalAddr().String())
	e.setConf("listfile", "golang lists.example\n")
	e.setConf("listdstate", filepath.Join(t.TempDir(), "listd"))
	e.setConf("listinterval", "3600")
	listd, logs := daemonEnv(t, e.vars, "", filepath.Join(bin, "im2000-listd"))
	await(t, 5*time.Second, "the scan without a route fails", func() bool {
		return strings.Contains(logs.String(), "warning: scan failed: golang at lists.example: ")
	})
	if srv.Sessions() != 0 {
		t.Fatal("the store was reached without a route")
	}

	id := store.post()
	e.setConf("routes", "# added while listd runs\n_msrap._tcp.lists.example "+srv.Addr+"\n")
	e.setConf("timeout", "2")
	listd.Process.Signal(syscall.SIGHUP)
	await(t, 5*time.Second, "the post, through the new route", func() bool { return agent.has(id) })
	for _, want := range []string{"info: SIGHUP: routes changed (1 lines, were 0)", `info: SIGHUP: timeout: "1" -> "2"`, " timeout=2 "} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the log does not say %q:\n%s", want, logs.String())
		}
	}

	e.setConf("listinterval", "soon")
	id = store.post()
	listd.Process.Signal(syscall.SIGHUP)
	await(t, 5*time.Second, "the next post, with the settings in force", func() bool { return agent.has(id) })
	if !strings.Contains(logs.String(), "warning: SIGHUP: ") || !strings.Contains(logs.String(), "going on with the settings in force") {
		t.Errorf("a bad setting on SIGHUP is not logged:\n%s", logs.String())
	}
	if err := listd.Process.Signal(syscall.Signal(0)); err != nil {
		t.Errorf("listd is gone: %v", err)
	}
}

// TestListdSender: listd's notifications carry the mailbox NAME@DOMAIN as
// sender, DOMAIN being the list's store location when the list file names
// it by a domain and lists.invalid otherwise, so that agents take them (a
// name alone is not a mailbox, and is refused) and readers can tell them.
func TestListdSender(t *testing.T) {
	store := &listStore{clock: uint64(time.Now().Unix()) + 100, posts: map[uint64]msgid.ID{}}
	id := store.post() // dated after now, when listd starts following each list
	srv := hostile.Start(t, msrap.Protocol, store.handler)
	var mu sync.Mutex
	got := map[string]string{} // sender -> store location
	ag := hostile.Start(t, rnasp.Protocol, func() hostile.Handler {
		return func(cmd wire.Body) hostile.Answer {
			n, ok := cmd.(*rnasp.Notify)
			if !ok {
				return refuse(rnasp.Protocol)
			}
			mu.Lock()
			defer mu.Unlock()
			for _, x := range n.Notifications {
				if x.ID == id && x.Recipient.Local == "reader" {
					got[x.Sender] = x.StoreClear.String()
				}
			}
			return hostile.Respond(&rnasp.NotifyOK{})
		}
	})

	e := newEnv(t, "reader")
	e.setConf("me", "example.net")
	e.setConf("rnasp", ag.Addr)
	e.setConf("routes", "_msrap._tcp.lists.example "+srv.Addr+"\n")
	e.setConf("listfile", "golang "+srv.Addr+"\nRust Lists.Example.\na..b lists.example\n")
	e.setConf("listdstate", filepath.Join(t.TempDir(), "listd"))
	e.setConf("listinterval", "3600")
	_, logs := daemonEnv(t, e.vars, "", filepath.Join(bin, "im2000-listd"))
	want := map[string]string{
		"golang@lists.invalid": srv.Addr,
		"rust@lists.example":   "Lists.Example",
		`"a..b"@lists.example`: "lists.example",
	}
	await(t, 10*time.Second, "the post from each of the three lists", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) >= len(want)
	})
	mu.Lock()
	defer mu.Unlock()
	if !maps.Equal(got, want) {
		t.Fatalf("senders and locations %q, want %q\n%s", got, want, logs.String())
	}
	for s := range got {
		if err := agent.CheckSender(s); err != nil {
			t.Errorf("an agent would refuse %q: %v", s, err)
		}
	}
}
