package tests

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"im2000/lib/wire"
	"im2000/lib/wire/msrap"
	"im2000/lib/wire/rnaqp"
	"im2000/tests/hostile"
)

// Bounded reading (issue 14; DESIGN-NOTES.md "Bounded reading"): a store
// that claims more than the reader takes, or sends more than it claims,
// costs fetch and pop3d no more than a page of memory and the entry is
// dropped; stores that never answer cost a run one timeout together; a
// store that closes its sessions still gets its messages read; an entry
// failing past maxlifetime is dropped.

// rssLimit is the peak resident set a reader may reach, whatever a store
// sends.
const rssLimit = 64 << 20

// agentOnce is an agent that behaves and hands out notes in its first
// session only: what a reader drops stays dropped.
func agentOnce(notes ...rnaqp.NotificationAndLocalData) func() hostile.Handler {
	var given atomic.Bool
	return func() hostile.Handler {
		return func(cmd wire.Body) hostile.Answer {
			switch cmd.(type) {
			case *rnaqp.Authenticate:
				return hostile.Respond(rnaqp.AuthenticateOK{})
			case rnaqp.RetrieveAndClear:
				r := &rnaqp.RetrieveAndClearOK{}
				if given.CompareAndSwap(false, true) {
					r.Notifications = notes
				}
				return hostile.Respond(r)
			}
			return refuse(rnaqp.Protocol)
		}
	}
}

// floodStore is a store that claims size for every message and answers
// every retrieval with a full page (1 MiB), at whatever offset: it never
// stops sending. Its first page starts with a header.
func floodStore(size uint64) hostile.Handler {
	line := strings.Repeat("x", 62) + "\r\n"
	page := []byte(strings.Repeat(line, 1<<20/len(line)))
	first := append([]byte("From: alice@example.org\r\nSubject: flood\r\n\r\n"), page[:len(page)-64]...)
	return func(cmd wire.Body) hostile.Answer {
		switch c := cmd.(type) {
		case *msrap.Retrieve:
			data := page
			if c.Offset == 0 {
				data = first
			}
			return hostile.Respond(&msrap.RetrieveOK{Data: data, Size: size})
		case *msrap.QuerySize:
			return hostile.Respond(&msrap.QuerySizeOK{Size: size})
		case *msrap.Silence:
			return hostile.Respond(msrap.SilenceOK{})
		}
		return refuse(msrap.Protocol)
	}
}

// floods are the two ways of sending too much: a notification and a store
// claiming 2^62 octets (refused at the first answer), and a store stating
// 100 MiB and a bit under a databytes of 128 MiB, without a size in the
// notification, that goes on sending past it (refused at the end, after
// 100 MiB streamed: a reader holding it in memory would pass the limit).
var floods = []struct {
	name      string
	notified  int // 0: none
	size      uint64
	databytes string
}{
	{"claims-2^62", 1 << 62, 1 << 62, ""},
	{"sends-past-its-size", 0, 100<<20 + 12345, strconv.Itoa(128 << 20)},
}

// rssCommand runs prog through a small python3 parent that fork()s and
// exec()s it and writes the program's peak resident set to a file.
// Why not the Go child's own rusage: Go starts children with
// clone(CLONE_VM|CLONE_VFORK), and Linux records the memory map a child
// leaves at exec in its peak, so a child of this test binary reports at
// least the test binary's own peak (64 MiB once enough tests had run),
// whatever the program used. python3's fork copies a ~10 MiB process.
func rssCommand(ctx context.Context, t *testing.T, prog string, args ...string) (*exec.Cmd, string) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "maxrss")
	script := `import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[2], sys.argv[2:])
_, status, ru = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(str(ru.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status) & 0xff)
`
	return exec.CommandContext(ctx, "/usr/bin/python3", append([]string{"-c", script, file, filepath.Join(bin, prog)}, args...)...), file
}

// maxRSS is the peak resident set rssCommand's program reached, in octets.
func maxRSS(t *testing.T, file string) int64 {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("no peak RSS written: %v", err)
	}
	kb, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || kb <= 0 {
		t.Fatalf("peak RSS %q", b)
	}
	return kb << 10 // kilobytes on Linux
}

// runRSS runs a program like env.run and also returns its peak RSS.
func (e *env) runRSS(prog string, args ...string) (result, int64) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd, rssFile := rssCommand(ctx, e.t, prog, args...)
	cmd.Env = e.vars
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if x, ok := err.(*exec.ExitError); ok {
		code = x.ExitCode()
	} else if err != nil {
		e.t.Fatalf("%s: %v", prog, err)
	}
	checkLog(e.t, prog, errb.String())
	return result{code, out.String(), errb.String()}, maxRSS(e.t, rssFile)
}

// readerEnv is bob's configuration for fetch and pop3d with the agent at
// agent, the stores at stores binding alice@example.org's domain.
func readerEnv(t *testing.T, agent string, stores ...string) *env {
	e := newEnv(t, "bob")
	e.setConf("rna", agent)
	e.setConf("password", "bobpw")
	e.setConf("routes", "_msrap._tcp.example.org "+strings.Join(stores, " ")+"\n")
	e.setConf("pop3state", filepath.Join(t.TempDir(), "pop3"))
	return e
}

// refusedLine is the log line of a refused entry; prefix is a session's
// "peer: user: " (pop3d), or nothing (fetch).
func refusedLine(prefix string, id byte, store string, size uint64) string {
	return fmt.Sprintf("warning: refused retrieval: %see%02x0000000000000000000000000000 from alice@example.org at %s: store's size %d,", prefix, id, store, size)
}

// TestBoundedFetch: im2000-fetch against stores that send too much.
func TestBoundedFetch(t *testing.T) {
	for _, f := range floods {
		t.Run(f.name, func(t *testing.T) {
			store := hostile.Start(t, msrap.Protocol, func() hostile.Handler { return floodStore(f.size) })
			agent := hostile.Start(t, rnaqp.Protocol, agentOnce(noteAt(store.Addr, 1, f.notified)))
			e := readerEnv(t, agent.Addr, store.Addr)
			if f.databytes != "" {
				e.setConf("databytes", f.databytes)
			}
			maildir := filepath.Join(t.TempDir(), "Maildir")
			r, rss := e.runRSS("im2000-fetch", "-d", maildir)
			t.Logf("peak RSS %d KiB; exit %d: %s", rss>>10, r.code, r.stderr)
			if rss >= rssLimit {
				t.Errorf("fetch's peak RSS %d MiB, over %d MiB", rss>>20, rssLimit>>20)
			}
			if r.code != 111 || !strings.Contains(r.stderr, refusedLine("", 1, store.Addr, f.size)) || !strings.Contains(r.stderr, "0 delivered, 0 kept for later, 1 dropped") {
				t.Errorf("fetch did not report the entry refused and dropped: exit %d", r.code)
			}
			for _, d := range []string{"new", "tmp"} {
				if ents, _ := os.ReadDir(filepath.Join(maildir, d)); len(ents) != 0 {
					t.Errorf("the Maildir's %s has %d files", d, len(ents))
				}
			}
			if r := e.run("", "im2000-fetch", "-d", maildir, "--summary"); r.stdout != "" {
				t.Errorf("still pending after the refusal: %q", r.stdout)
			}
		})
	}
}

// popPipe is a POP3 session with an im2000-pop3d on its standard input
// and output, as tcpserver runs it.
type popPipe struct {
	t       *testing.T
	cmd     *exec.Cmd
	rssFile string
	in      io.WriteCloser
	r       *bufio.Reader
	log     bytes.Buffer
}

func startPOP3Pipe(t *testing.T, e *env) *popPipe {
	p := &popPipe{t: t}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	p.cmd, p.rssFile = rssCommand(ctx, t, "im2000-pop3d")
	p.cmd.Env = append(e.vars, "TCPREMOTEIP=127.0.0.1")
	p.cmd.Stderr = &p.log
	var err error
	if p.in, err = p.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.r = bufio.NewReader(out)
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if g := p.line(); !strings.HasPrefix(g, "+OK") {
		t.Fatalf("greeting %q", g)
	}
	return p
}

func (p *popPipe) line() string {
	l, err := p.r.ReadString('\n')
	if err != nil {
		p.t.Fatalf("POP3: %v after %q; log:\n%s", err, l, p.log.String())
	}
	return strings.TrimRight(l, "\r\n")
}

func (p *popPipe) cmd1(c string) string {
	fmt.Fprintf(p.in, "%s\r\n", c)
	return p.line()
}

// quit ends the session and returns pop3d's peak RSS.
func (p *popPipe) quit() int64 {
	p.cmd1("QUIT")
	p.in.Close()
	if err := p.cmd.Wait(); err != nil {
		p.t.Errorf("pop3d: %v; log:\n%s", err, p.log.String())
	}
	checkLog(p.t, "im2000-pop3d", p.log.String())
	return maxRSS(p.t, p.rssFile)
}

// TestBoundedPOP3: im2000-pop3d (as under tcpserver) doing RETR against
// stores that send too much.
func TestBoundedPOP3(t *testing.T) {
	for _, f := range floods {
		t.Run(f.name, func(t *testing.T) {
			store := hostile.Start(t, msrap.Protocol, func() hostile.Handler { return floodStore(f.size) })
			agent := hostile.Start(t, rnaqp.Protocol, agentOnce(noteAt(store.Addr, 1, f.notified)))
			e := readerEnv(t, agent.Addr, store.Addr)
			if f.databytes != "" {
				e.setConf("databytes", f.databytes)
			}
			p := startPOP3Pipe(t, e)
			p.cmd1("USER bob")
			if r := p.cmd1("PASS bobpw"); r != "+OK bob has 1 messages" {
				t.Fatalf("login: %q", r)
			}
			if r := p.cmd1("RETR 1"); !strings.HasPrefix(r, "-ERR") {
				t.Errorf("RETR of a flood: %q", r)
			}
			if r := p.cmd1("NOOP"); r != "+OK" {
				t.Errorf("the session after the refusal: %q", r)
			}
			rss := p.quit()
			t.Logf("peak RSS %d KiB; log: %s", rss>>10, p.log.String())
			if rss >= rssLimit {
				t.Errorf("pop3d's peak RSS %d MiB, over %d MiB", rss>>20, rssLimit>>20)
			}
			if !strings.Contains(p.log.String(), refusedLine("127.0.0.1: bob: ", 1, store.Addr, f.size)) {
				t.Errorf("pop3d did not report the refused entry")
			}
			p = startPOP3Pipe(t, e)
			p.cmd1("USER bob")
			if r := p.cmd1("PASS bobpw"); r != "+OK bob has 0 messages" {
				t.Errorf("login after the refusal: %q (the entry is not dropped)", r)
			}
			p.quit()
		})
	}
}
