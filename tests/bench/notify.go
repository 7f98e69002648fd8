package main

import (
	"context"
	"fmt"
	"net/netip"
	"net/smtp"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"im2000/lib/addr"
	"im2000/lib/agent"
	"im2000/lib/msgid"
	"im2000/lib/session"
	"im2000/lib/store"
	"im2000/lib/wire"
	"im2000/lib/wire/rnaqp"
	"im2000/lib/wire/rnasp"
)

// diskWritten returns the bytes written so far to the block device holding
// path, after a sync: the whole system's writes, which a quiet machine
// attributes to what runs between two readings.
func diskWritten(path string) int64 {
	unix.Sync()
	var st unix.Stat_t
	must(unix.Stat(path, &st))
	b, err := os.ReadFile(fmt.Sprintf("/sys/dev/block/%d:%d/stat", unix.Major(st.Dev), unix.Minor(st.Dev)))
	must(err)
	f := strings.Fields(string(b))
	sectors, _ := strconv.ParseInt(f[6], 10, 64)
	return sectors * 512
}

// agentSpool makes a spool with the given accounts and starts agentd on it.
func startAgent(dir, domain string, accounts []string) (string, func()) {
	must(os.MkdirAll(filepath.Join(dir, "conf"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "conf", "me"), []byte(domain+"\n"), 0o644))
	// No rate or quota: these measure intake, not im2000-agentd's limits.
	must(os.WriteFile(filepath.Join(dir, "conf", "agentrate"), []byte("0\n"), 0o644))
	must(os.WriteFile(filepath.Join(dir, "conf", "agentquota"), []byte("0\n"), 0o644))
	for _, a := range accounts {
		must(os.MkdirAll(filepath.Join(dir, "spool", a), 0o700))
	}
	addr := "127.0.0.1:" + freePort()
	bin, _ := filepath.Abs(*binDir)
	cmd := exec.Command(filepath.Join(bin, "im2000-agentd"), "-l", addr)
	cmd.Env = append(os.Environ(), "IM2000_CONF="+filepath.Join(dir, "conf"), "IM2000_AGENT="+filepath.Join(dir, "spool"))
	must(cmd.Start())
	waitListening(addr)
	return addr, func() { cmd.Process.Kill(); cmd.Wait() }
}

func waitListening(addr string) {
	for i := 0; i < 200; i++ {
		if c, err := session.Dial(context.Background(), rnasp.Protocol, addr, time.Second); err == nil {
			c.Close()
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
	log("%s did not come up", addr)
	os.Exit(111)
}

func percentile(ds []time.Duration, p float64) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[min(len(s)-1, int(p*float64(len(s))))]
}

func benchNotify() {
	tmp, _ := os.MkdirTemp("/var/tmp", "im2000-bench-notify-")
	defer os.RemoveAll(tmp)
	bin, _ := filepath.Abs(*binDir)

	// agentd intake.
	agentAddr, stopAgent := startAgent(filepath.Join(tmp, "a0"), "example.net", []string{"bob"})
	intake := func(batch int) (float64, error) {
		c, err := session.Dial(context.Background(), rnasp.Protocol, agentAddr, time.Minute)
		if err != nil {
			return 0, err
		}
		defer c.Close()
		const total = 10000
		cmd := &rnasp.Notify{}
		for i := 0; i < batch; i++ {
			cmd.Notifications = append(cmd.Notifications, rnasp.Notification{StoreClear: wire.ServiceLocation{Domain: wire.DomainName{"store", "example", "org"}},
				Recipient: wire.MailBox{Local: "bob", Domain: wire.DomainName{"example", "net"}}, Sender: "alice@example.org"})
		}
		return timed(total, func() error {
			for sent := 0; sent < total; sent += batch {
				for i := range cmd.Notifications {
					cmd.Notifications[i].ID = msgid.New()
				}
				if _, err := session.Expect[*rnasp.NotifyOK](c, cmd); err != nil {
					return err
				}
			}
			return nil
		})
	}
	rows := []*row{
		{name: "notifications accepted by im2000-agentd, batches of 100", unit: "/s", f: func() (float64, error) { return intake(100) }},
		{name: "notifications accepted by im2000-agentd, batches of 1,000", unit: "/s", f: func() (float64, error) { return intake(1000) }},
	}
	measure(rows)
	table("Notification agent intake (listener mode, no fsync: the default)", rows)
	stopAgent()

	// Latency: commit to notification file at the agent, one message at a time.
	agentDir := filepath.Join(tmp, "a1")
	agentAddr, stopAgent = startAgent(agentDir, "example.net", []string{"bob"})
	defer stopAgent()
	storeDir, confDir := filepath.Join(tmp, "store"), filepath.Join(tmp, "sconf")
	must(os.MkdirAll(storeDir, 0o755))
	must(os.MkdirAll(confDir, 0o755))
	location := "127.0.0.1:4002" // only carried in the notifications here
	must(os.WriteFile(filepath.Join(confDir, "storelocation"), []byte(location+"\n"), 0o644))
	routes := "_rnasp._tcp.example.net " + agentAddr + "\n"
	nd := exec.Command(filepath.Join(bin, "im2000-notifyd"))
	nd.Env = append(os.Environ(), "IM2000_CONF="+confDir, "IM2000_STORE="+storeDir)
	var fanAgents []func()
	var domains []string
	for i := 0; i < 10; i++ {
		var accounts []string
		for j := 0; j < 100; j++ {
			accounts = append(accounts, fmt.Sprintf("u%03d", j))
		}
		d := fmt.Sprintf("d%d.example", i)
		a, stop := startAgent(filepath.Join(tmp, "fan"+strconv.Itoa(i)), d, accounts)
		fanAgents = append(fanAgents, stop)
		domains = append(domains, d)
		routes += "_rnasp._tcp." + d + " " + a + "\n"
	}
	defer func() {
		for _, s := range fanAgents {
			s()
		}
	}()
	must(os.WriteFile(filepath.Join(confDir, "routes"), []byte(routes), 0o644))
	must(nd.Start())
	defer func() { nd.Process.Kill(); nd.Wait() }()
	time.Sleep(300 * time.Millisecond)

	st, err := store.Open(storeDir)
	must(err)
	acct, _ := st.Account("alice")
	from, _ := addr.Parse("alice@example.org")
	bob, _ := addr.Parse("bob@example.net")
	loc, _ := netipLocation(location)
	const n = 1000
	var lat []time.Duration
	for i := 0; i < n; i++ {
		d, err := acct.NewDraft(store.Submission{Sender: from, Lifetime: time.Hour, Recipients: []addr.Mailbox{bob}}, store.Limits{})
		must(err)
		fmt.Fprintf(d, "Subject: %d\r\n\r\nx\r\n", i)
		env, err := d.Commit()
		must(err)
		committed := time.Now()
		key := agent.Key(&rnaqp.NotificationAndLocalData{Notification: rnasp.Notification{StoreClear: loc, ID: env.Recipients[0].ID}})
		path := filepath.Join(agentDir, "spool", "bob", key)
		for {
			if _, err := os.Stat(path); err == nil {
				break
			}
			if time.Since(committed) > 30*time.Second {
				log("notification %d never arrived", i)
				os.Exit(111)
			}
			time.Sleep(200 * time.Microsecond)
		}
		lat = append(lat, time.Since(committed))
	}
	fmt.Printf("\nLatency from commit to the notification file at the agent, %d messages one at a time (%s):\n\n", n, time.Now().UTC().Format("2006-01-02"))
	fmt.Println("| median | p90 | p99 | max |")
	fmt.Println("|---:|---:|---:|---:|")
	fmt.Printf("| %v | %v | %v | %v |\n", percentile(lat, .5).Round(10*time.Microsecond), percentile(lat, .9).Round(10*time.Microsecond),
		percentile(lat, .99).Round(10*time.Microsecond), percentile(lat, 1).Round(10*time.Microsecond))

	// Fan-out: one message to 1,000 recipients on 10 agents.
	var rcpts []addr.Mailbox
	for _, d := range domains {
		for j := 0; j < 100; j++ {
			a, _ := addr.Parse(fmt.Sprintf("u%03d@%s", j, d))
			rcpts = append(rcpts, a)
		}
	}
	msg := sized(10 << 10)
	before := diskWritten(storeDir)
	start := time.Now()
	d, err := acct.NewDraft(store.Submission{Sender: from, Lifetime: time.Hour, Recipients: rcpts}, store.Limits{})
	must(err)
	d.Write(msg)
	env, err := d.Commit()
	must(err)
	for {
		s, err := acct.Status(env.ID)
		must(err)
		done := 0
		for _, r := range s.Recipients {
			if r.Notification == store.Notifying {
				done++
			}
		}
		if done == len(rcpts) {
			break
		}
		if time.Since(start) > time.Minute {
			log("fan-out: only %d notified after a minute", done)
			os.Exit(111)
		}
		time.Sleep(time.Millisecond)
	}
	imTime := time.Since(start)
	imBytes := diskWritten(storeDir) - before
	fmt.Printf("\nOne 10 KiB message to 1,000 recipients on 10 agents: all notified in %v; %d bytes written to disk (system-wide, after sync).\n", imTime.Round(time.Millisecond), imBytes)
	pfTime, pfBytes, err := postfixFanout(msg)
	if err != nil {
		log("postfix fan-out: %v", err)
		return
	}
	fmt.Printf("The same message to 1,000 local Maildir recipients by postfix: all delivered in %v; %d bytes written.\n\n", pfTime.Round(time.Millisecond), pfBytes)
	fmt.Printf("postfix / IM2000: time **%.1f×**, bytes written **%.1f×**\n", pfTime.Seconds()/imTime.Seconds(), float64(pfBytes)/float64(imBytes))
}

func netipLocation(s string) (wire.ServiceLocation, error) {
	var l wire.ServiceLocation
	ap, err := parseAddrPort(s)
	l.Literals = append(l.Literals, ap)
	return l, err
}

// postfixFanout delivers msg to 1,000 virtual Maildir recipients and
// measures the time until all are delivered and the bytes written.
func postfixFanout(msg []byte) (time.Duration, int64, error) {
	stop, err := startPostfix()
	if err != nil {
		return 0, 0, err
	}
	defer stop()
	base := "/var/tmp/im2000-bench-vmail"
	os.RemoveAll(base)
	if err := os.MkdirAll(base, 0o755); err != nil {
		return 0, 0, err
	}
	os.Chown(base, 5000, 5000)
	var maps strings.Builder
	for j := 0; j < 1000; j++ {
		fmt.Fprintf(&maps, "u%03d@bench.example bench.example/u%03d/\n", j, j)
	}
	if err := os.WriteFile("/etc/postfix/im2000-bench-vmailbox", []byte(maps.String()), 0o644); err != nil {
		return 0, 0, err
	}
	sh := `postmap /etc/postfix/im2000-bench-vmailbox &&
postconf -e virtual_mailbox_domains=bench.example virtual_mailbox_base=` + base + ` \
  virtual_mailbox_maps=hash:/etc/postfix/im2000-bench-vmailbox virtual_uid_maps=static:5000 \
  virtual_gid_maps=static:5000 virtual_minimum_uid=100 virtual_destination_recipient_limit=1000 &&
postfix reload`
	if out, err := exec.Command("sh", "-c", sh).CombinedOutput(); err != nil {
		return 0, 0, fmt.Errorf("%v: %s", err, out)
	}
	time.Sleep(time.Second)
	before := diskWritten(base)
	start := time.Now()
	c, err := smtp.Dial("127.0.0.1:25")
	if err != nil {
		return 0, 0, err
	}
	c.Hello("bench.example.org")
	c.Mail("alice@example.org")
	for j := 0; j < 1000; j++ {
		if err := c.Rcpt(fmt.Sprintf("u%03d@bench.example", j)); err != nil {
			return 0, 0, err
		}
	}
	w, _ := c.Data()
	w.Write(msg)
	if err := w.Close(); err != nil {
		return 0, 0, err
	}
	c.Quit()
	for {
		n := 0
		for j := 0; j < 1000; j++ {
			if ents, err := os.ReadDir(fmt.Sprintf("%s/bench.example/u%03d/new", base, j)); err == nil && len(ents) > 0 {
				n++
			}
		}
		if n == 1000 {
			break
		}
		if time.Since(start) > 2*time.Minute {
			return 0, 0, fmt.Errorf("only %d of 1000 delivered after 2 minutes", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	took := time.Since(start)
	return took, diskWritten(base) - before, nil
}

func parseAddrPort(s string) (netip.AddrPort, error) { return netip.ParseAddrPort(s) }
