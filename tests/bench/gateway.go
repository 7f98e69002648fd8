package main

import (
	"fmt"
	"net/smtp"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// benchGateway compares im2000-gatewayd, the inbound SMTP gateway, with
// postfix's own smtpd receiving the same messages: the same net/smtp
// client (no AUTH on either), the same 10 KiB messages, one and eight
// sessions, in the same run. The gateway commits each message into the
// gateway account's archive (fsync, rename) after its SPF and DKIM checks;
// its resolvers setting names a closed port, so SPF answers temperror at
// once and the numbers are SMTP, the checks' parsing and the store, not
// DNS latency. postfix queues each message for local delivery to root.
func benchGateway() {
	stopPostfix, err := startPostfix()
	must(err)
	defer stopPostfix()
	tmp, _ := os.MkdirTemp("", "im2000-bench-gateway-")
	defer os.RemoveAll(tmp)
	bin, _ := filepath.Abs(*binDir)
	confDir, storeDir, agentDir := filepath.Join(tmp, "conf"), filepath.Join(tmp, "store"), filepath.Join(tmp, "agent")
	for _, d := range []string{confDir, storeDir, filepath.Join(agentDir, "bob")} {
		must(os.MkdirAll(d, 0o755))
	}
	for name, v := range map[string]string{"me": "example.org", "store": storeDir, "agent": agentDir, "databytes": "33554432", "resolvers": "127.0.0.1:9"} {
		must(os.WriteFile(filepath.Join(confDir, name), []byte(v+"\n"), 0o600))
	}
	addr := "127.0.0.1:" + freePort()
	cmd := exec.Command(filepath.Join(bin, "im2000-gatewayd"), "-l", addr)
	cmd.Env = append(os.Environ(), "IM2000_CONF="+confDir)
	must(cmd.Start())
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	for i := 0; i < 200; i++ {
		if c, err := smtp.Dial(addr); err == nil {
			c.Close()
			break
		}
		time.Sleep(25 * time.Millisecond)
	}
	msg := sized(10 << 10)
	const n = 200
	rows := []*row{
		{name: "im2000-gatewayd (-l), 10 KiB, one session", unit: "msg/s", f: func() (float64, error) {
			return timed(n, func() error { return smtpSession(addr, "alice", "", "bob@example.org", n, msg) })
		}},
		{name: "postfix smtpd (port 25), 10 KiB, one session", unit: "msg/s", f: func() (float64, error) {
			return timed(n, func() error { return smtpPostfix(n, msg) })
		}},
		{name: "im2000-gatewayd, 10 KiB, 8 parallel sessions", unit: "msg/s", f: func() (float64, error) {
			return timed(8*n/4, func() error {
				return parallel(8, func() error { return smtpSession(addr, "alice", "", "bob@example.org", n/4, msg) })
			})
		}},
		{name: "postfix smtpd, 10 KiB, 8 parallel sessions", unit: "msg/s", f: func() (float64, error) {
			return timed(8*n/4, func() error {
				return parallel(8, func() error { return smtpPostfix(n/4, msg) })
			})
		}},
	}
	measure(rows)
	table("Inbound SMTP: the gateway and postfix's smtpd taking the same messages", rows)
	fmt.Printf("\nim2000-gatewayd / postfix, one session: **%.2f×**; 8 sessions: **%.2f×**\n",
		median(rows[0].rates)/median(rows[1].rates), median(rows[2].rates)/median(rows[3].rates))
}
