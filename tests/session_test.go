package tests

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"im2000/lib/locate"
	"im2000/lib/session"
	"im2000/lib/wire"
	"im2000/lib/wire/rnasp"
)

// freePort returns a loopback port that was free a moment ago.
func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// syncBuffer collects a process's stderr while it runs.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// daemon starts a long-running process, stops it (by pid) when the test
// ends, and waits until addr accepts connections.
func daemon(t testing.TB, addr string, name string, args ...string) (*exec.Cmd, *syncBuffer) {
	t.Helper()
	return daemonEnv(t, nil, addr, name, args...)
}

// daemonEnv is daemon with an environment (nil: this process's).
func daemonEnv(t testing.TB, env []string, addr string, name string, args ...string) (*exec.Cmd, *syncBuffer) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = env
	logs := &syncBuffer{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		checkLog(t, filepath.Base(name), logs.String())
	})
	if addr == "" { // nothing to wait for: not a server
		return cmd, logs
	}
	for i := 0; i < 200; i++ {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return cmd, logs
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("%s did not come up on %s: %s", name, addr, logs.String())
	return nil, nil
}

func notify(locals ...string) *rnasp.Notify {
	n := &rnasp.Notify{}
	for i, l := range locals {
		n.Notifications = append(n.Notifications, rnasp.Notification{
			StoreClear: wire.ServiceLocation{Domain: wire.DomainName{"store", "example", "org"}},
			Recipient:  wire.MailBox{Local: l, Domain: wire.DomainName{"example", "net"}},
			ID:         [16]byte{byte(i)}, Sender: "alice@example.org"})
	}
	return n
}

// exercise runs the checks every way of serving must pass.
func exercise(t *testing.T, addr string) {
	t.Helper()
	c, err := session.Dial(t.Context(), rnasp.Protocol, addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pdu, err := c.Call(notify("bob", "nobody", "carol"))
	if err != nil {
		t.Fatal(err)
	}
	if r := pdu.Response.(*rnasp.NotifyOK).Results; fmt.Sprint(r) != "[0 1 0]" {
		t.Fatalf("results %v", r)
	}
	// A command the protocol does not have: malformed, and the session goes on.
	conn, _ := net.Dial("tcp", addr)
	defer conn.Close()
	r := bufio.NewReader(conn)
	wire.WriteFrame(conn, []byte{0xA1, 0x04, 0xA0, 0x02, 0xA7, 0x00})
	frame, err := wire.ReadFrame(r, 1<<16)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := rnasp.Protocol.Unmarshal(frame)
	if p.Status != rnasp.ErrorMalformedPDU || !p.ForceAbort {
		t.Fatalf("unknown command: %+v", p)
	}
	wire.WriteFrame(conn, wire.MarshalCommand(notify("dave")))
	if frame, err = wire.ReadFrame(r, 1<<16); err != nil {
		t.Fatalf("session ended after a malformed PDU: %v", err)
	}
}

// TestUnderTcpserver runs the engine as tcpserver runs every im2000 server:
// one process per connection, the socket on stdin/stdout.
func TestUnderTcpserver(t *testing.T) {
	tcpserver, err := exec.LookPath("tcpserver")
	if err != nil {
		t.Fatal("tcpserver (ucspi-tcp) is not installed: run tests/deps.sh")
	}
	port := strconv.Itoa(freePort(t))
	addr := "127.0.0.1:" + port
	_, logs := daemon(t, addr, tcpserver, "-RHl0", "-c", "10", "127.0.0.1", port, filepath.Join(bin, "testserver"), "-t", "1")
	exercise(t, addr)

	// The idle timeout: errorcommandtimeout, then the process closes.
	conn, _ := net.Dial("tcp", addr)
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	frame, err := wire.ReadFrame(conn, 1<<16)
	if err != nil {
		t.Fatalf("no timeout response: %v", err)
	}
	if p, _ := rnasp.Protocol.Unmarshal(frame); p.Status != rnasp.ErrorCommandTimeout || !p.ForceAbort {
		t.Fatalf("after idling: %+v", p)
	}
	if _, err := conn.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("not closed after the timeout: %v", err)
	}
	if !strings.Contains(logs.String(), "session from 127.0.0.1:") {
		t.Errorf("the server did not learn the peer from TCPREMOTEIP/TCPREMOTEPORT:\n%s", logs.String())
	}
}

// TestOnPipes runs one session on plain pipes, as inetd-style launchers and
// s6-ipcserver do.
func TestOnPipes(t *testing.T) {
	cmd := exec.Command(filepath.Join(bin, "testserver"))
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	var logs bytes.Buffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(out)
	for i := 0; i < 3; i++ {
		wire.WriteFrame(in, wire.MarshalCommand(notify("bob")))
		frame, err := wire.ReadFrame(r, 1<<16)
		if err != nil {
			t.Fatal(err)
		}
		if p, err := rnasp.Protocol.Unmarshal(frame); err != nil || p.Status != rnasp.NoError {
			t.Fatalf("%+v %v", p, err)
		}
	}
	in.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit: %v: %s", err, logs.String())
	}
}

// TestListenerMode runs the server's own listener, then stops it with
// SIGTERM: an idle session is told errorserviceshutdown and the process
// exits 0.
func TestListenerMode(t *testing.T) {
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cmd, logs := daemon(t, addr, filepath.Join(bin, "testserver"), "-l", addr, "-c", "5")
	exercise(t, addr)
	idle, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	time.Sleep(100 * time.Millisecond) // let it be accepted
	cmd.Process.Signal(syscall.SIGTERM)
	idle.SetDeadline(time.Now().Add(5 * time.Second))
	frame, err := wire.ReadFrame(idle, 1<<16)
	if err != nil {
		t.Fatalf("idle session got no shutdown notice: %v\n%s", err, logs.String())
	}
	if p, _ := rnasp.Protocol.Unmarshal(frame); p.Status != rnasp.ErrorServiceShutdown {
		t.Fatalf("idle session got %+v", p)
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	if err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, logs.String())
	}
}

// TestConnectByRoute finds the server through a routes file, as a private
// deployment does, and tells a domain with no route and no DNS apart.
func TestConnectByRoute(t *testing.T) {
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	daemon(t, addr, filepath.Join(bin, "testserver"), "-l", addr)
	dead := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	l := &locate.Locator{Routes: map[string][]string{"_rnasp._tcp.example.net": {dead, addr}}, Timeout: time.Second}
	c, err := session.Connect(t.Context(), l, rnasp.Protocol, "Example.NET", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Call(notify("bob")); err != nil {
		t.Fatal(err)
	}
	// Without a resolver nothing is known of the domain: no DNS answer,
	// never "no service" (which a smarthost would take).
	if _, err := session.Connect(t.Context(), l, rnasp.Protocol, "elsewhere.example", time.Second); !errors.Is(err, locate.ErrNoAnswer) {
		t.Fatalf("no route, no resolver: %v", err)
	}
}
