package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"im2000/lib/session"
	"im2000/lib/wire"
	"im2000/lib/wire/rnasp"
)

// trivial is the command the round trips carry: one notification.
var trivial = &rnasp.Notify{Notifications: []rnasp.Notification{{
	StoreClear: wire.ServiceLocation{Domain: wire.DomainName{"example", "org"}},
	Recipient:  wire.MailBox{Local: "bob", Domain: wire.DomainName{"example", "net"}},
	Sender:     "alice@example.org"}}}

func freePort() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log("%v", err)
		os.Exit(111)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

// serve starts a server process and returns how to stop it.
func serve(addr string, name string, args ...string) func() {
	cmd := exec.Command(name, args...)
	if err := cmd.Start(); err != nil {
		log("%s: %v", name, err)
		os.Exit(111)
	}
	for i := 0; i < 200; i++ {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		time.Sleep(25 * time.Millisecond)
	}
	return func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}
}

// roundTrips measures commands per second on one session.
func roundTrips(addr string, n int) (float64, error) {
	c, err := session.Dial(context.Background(), rnasp.Protocol, addr, 5*time.Second)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	session.Expect[*rnasp.NotifyOK](c, trivial) // the session's first command pays for process start under tcpserver
	start := time.Now()
	for i := 0; i < n; i++ {
		if _, err := session.Expect[*rnasp.NotifyOK](c, trivial); err != nil {
			return 0, err
		}
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// sessions measures one-command sessions per second.
func sessions(addr string, n int) (float64, error) {
	start := time.Now()
	for i := 0; i < n; i++ {
		c, err := session.Dial(context.Background(), rnasp.Protocol, addr, 5*time.Second)
		if err != nil {
			return 0, err
		}
		_, err = session.Expect[*rnasp.NotifyOK](c, trivial)
		c.Close()
		if err != nil {
			return 0, err
		}
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

func benchWire() {
	server, _ := filepath.Abs(filepath.Join(*binDir, "testserver"))
	if out, err := exec.Command("go", "build", "-o", server, "./tests/testserver").CombinedOutput(); err != nil {
		log("building the test server: %v: %s", err, out)
		os.Exit(111)
	}
	tcpserver, err := exec.LookPath("tcpserver")
	if err != nil {
		log("tcpserver not found: apt-get install ucspi-tcp")
		os.Exit(111)
	}
	lport, tport := freePort(), freePort()
	laddr, taddr := "127.0.0.1:"+lport, "127.0.0.1:"+tport
	stopL := serve(laddr, server, "-l", laddr)
	defer stopL()
	stopT := serve(taddr, tcpserver, "-RHl0", "127.0.0.1", tport, server)
	defer stopT()

	const trips = 5000
	rows := []*row{
		{name: "round trips, one session, listener mode (-l)", unit: "/s", f: func() (float64, error) { return roundTrips(laddr, trips) }},
		{name: "round trips, one session, under tcpserver", unit: "/s", f: func() (float64, error) { return roundTrips(taddr, trips) }},
		{name: "one-command sessions, listener mode (-l)", unit: "/s", f: func() (float64, error) { return sessions(laddr, 500) }},
		{name: "one-command sessions, under tcpserver (a process each)", unit: "/s", f: func() (float64, error) { return sessions(taddr, 200) }},
	}
	measure(rows)
	table("Session engine: a trivial RNASP Notify (one notification) over loopback", rows)
	fmt.Printf("\nlistener mode / tcpserver, round trips on one session: **%.2f×**\n", median(rows[0].rates)/median(rows[1].rates))
}
