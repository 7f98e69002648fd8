package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
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
	c.Call(trivial) // the session's first command pays for process start under tcpserver
	start := time.Now()
	for i := 0; i < n; i++ {
		if _, err := c.Call(trivial); err != nil {
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
		_, err = c.Call(trivial)
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
	type row struct {
		name  string
		f     func() (float64, error)
		rates []float64
	}
	rows := []*row{
		{name: "round trips, one session, listener mode (-l)", f: func() (float64, error) { return roundTrips(laddr, trips) }},
		{name: "round trips, one session, under tcpserver", f: func() (float64, error) { return roundTrips(taddr, trips) }},
		{name: "one-command sessions, listener mode (-l)", f: func() (float64, error) { return sessions(laddr, 500) }},
		{name: "one-command sessions, under tcpserver (a process each)", f: func() (float64, error) { return sessions(taddr, 200) }},
	}
	for r := 0; r < *roundsFlag; r++ {
		for _, x := range rows {
			rate, err := x.f()
			if err != nil {
				log("%s: %v", x.name, err)
				os.Exit(111)
			}
			x.rates = append(x.rates, rate)
			log("round %d: %-60s %8.0f/s", r+1, x.name, rate)
		}
	}
	fmt.Printf("\nSession engine: a trivial RNASP Notify (one notification) over loopback, %d rounds, medians (%s):\n\n", *roundsFlag, time.Now().UTC().Format("2006-01-02"))
	fmt.Println("| what | per second (median) | all rounds |")
	fmt.Println("|---|---:|---|")
	for _, x := range rows {
		var all []string
		for _, v := range x.rates {
			all = append(all, fmt.Sprintf("%.0f", v))
		}
		fmt.Printf("| %s | %.0f | %s |\n", x.name, median(x.rates), strings.Join(all, " "))
	}
	fmt.Printf("\nlistener mode / tcpserver, round trips on one session: **%.2f×**\n", median(rows[0].rates)/median(rows[1].rates))
}
