package main

import (
	"fmt"
	"net/smtp"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// smtpSession sends n copies of msg over one SMTP session, authenticating
// when a password is given.
func smtpSession(addr, user, password, to string, n int, msg []byte) error {
	c, err := smtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Hello("bench.example.org"); err != nil {
		return err
	}
	if password != "" {
		if err := c.Auth(smtp.PlainAuth("", user, password, "127.0.0.1")); err != nil {
			return err
		}
	}
	for i := 0; i < n; i++ {
		if err := c.Mail(user + "@example.org"); err != nil {
			return err
		}
		if err := c.Rcpt(to); err != nil {
			return err
		}
		w, err := c.Data()
		if err != nil {
			return err
		}
		w.Write(msg)
		if err := w.Close(); err != nil {
			return err
		}
	}
	return c.Quit()
}

// benchSMTP compares im2000-smtpd with postfix's SMTP service: the same
// net/smtp client, the same 10 KiB messages, in the same run.
func benchSMTP() {
	stopPostfix, err := startPostfix()
	must(err)
	defer stopPostfix()
	tmp, _ := os.MkdirTemp("", "im2000-bench-smtp-")
	defer os.RemoveAll(tmp)
	bin, _ := filepath.Abs(*binDir)
	confDir, storeDir := filepath.Join(tmp, "conf"), filepath.Join(tmp, "store")
	must(os.MkdirAll(confDir, 0o755))
	must(os.MkdirAll(storeDir, 0o755))
	h, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	for name, v := range map[string]string{"passwords": "alice:" + string(h), "me": "example.org", "store": storeDir, "databytes": "33554432"} {
		must(os.WriteFile(filepath.Join(confDir, name), []byte(v+"\n"), 0o600))
	}
	addr := "127.0.0.1:" + freePort()
	cmd := exec.Command(filepath.Join(bin, "im2000-smtpd"), "-l", addr)
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
		{name: "im2000-smtpd (-l, local store), 10 KiB, one session, AUTH PLAIN", unit: "msg/s", f: func() (float64, error) {
			return timed(n, func() error { return smtpSession(addr, "alice", "pw", "bob@example.net", n, msg) })
		}},
		{name: "postfix smtpd (port 25, no AUTH), 10 KiB, one session", unit: "msg/s", f: func() (float64, error) {
			return timed(n, func() error { return smtpPostfix(n, msg) })
		}},
		{name: "im2000-smtpd, 10 KiB, 8 parallel sessions", unit: "msg/s", f: func() (float64, error) {
			return timed(8*n/4, func() error {
				return parallel(8, func() error { return smtpSession(addr, "alice", "pw", "bob@example.net", n/4, msg) })
			})
		}},
		{name: "postfix smtpd, 10 KiB, 8 parallel sessions", unit: "msg/s", f: func() (float64, error) {
			return timed(8*n/4, func() error {
				return parallel(8, func() error { return smtpPostfix(n/4, msg) })
			})
		}},
	}
	measure(rows)
	table("SMTP submission: the same net/smtp client and messages against both", rows)
	fmt.Printf("\nim2000-smtpd / postfix, one session: **%.2f×**; 8 sessions: **%.2f×**\n",
		median(rows[0].rates)/median(rows[1].rates), median(rows[2].rates)/median(rows[3].rates))
}
