package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/smtp"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/bcrypt"

	"im2000/lib/msgid"
	"im2000/lib/session"
	"im2000/lib/store"
	"im2000/lib/wire"
	"im2000/lib/wire/msoap"
	"im2000/lib/wire/msrap"
)

// benchArchiveIO measures issue 17's speed goal with the real programs:
// one 10 KiB message submitted over MSOAP to im2000-submitd, notified by
// im2000-notifyd to 10 im2000-agentd, and silenced by every recipient over
// MSRAP to im2000-retrieved, for 1,000 and 10,000 recipients; the octets
// the store's own three processes had the kernel write for them
// (/proc/PID/io write_bytes: page-cache pages they dirtied and direct
// writes; the agents are not counted), side by side with postfix
// delivering the same message to as many local Maildirs (the disk's
// sectors written, whole system, after a sync: postfix is several
// processes).
func benchArchiveIO() {
	fmt.Printf("\n## The archive over its life, the store's own processes (issue 17)\n\n")
	fmt.Printf("One 10 KiB message; every recipient notified, then silenced over MSRAP by as many sessions at once as the second column says (%s).\n\n", time.Now().UTC().Format("2006-01-02"))
	fmt.Println("| recipients | silencing sessions | submitd | notifyd | retrieved | store total | per recipient | postfix (disk) | postfix / store |")
	fmt.Println("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, f := range strings.Split(*archiveRcpts, ",") {
		n, err := strconv.Atoi(f)
		must(err)
		pf, pfTook, err := postfixMaildirs(n, sized(10<<10))
		if err != nil {
			log("postfix: %v", err)
			os.Exit(111)
		}
		log("%d recipients: postfix %v", n, pfTook.Round(time.Millisecond))
		for _, f := range strings.Split(*silencers, ",") {
			k, err := strconv.Atoi(f)
			must(err)
			io, took := storeIO(n, k)
			total := io[0] + io[1] + io[2]
			fmt.Printf("| %d | %d | %d | %d | %d | %d | **%d** | %d | **%.0f×** |\n", n, k, io[0], io[1], io[2], total, total/int64(n), pf, float64(pf)/float64(total))
			log("%d recipients, %d silencing sessions: store %v", n, k, took.Round(time.Millisecond))
		}
	}
}

var (
	archiveRcpts = flag.String("archivercpts", "1000,10000", "archive-io: recipient counts to measure")
	// Recipients fetch on their own schedules; a busy store sees many
	// at a time, and retrieved writes the silences that arrive together
	// with one fsync (im2000-retrieved/batch.go).
	silencers = flag.String("silencers", "8,32,128", "archive-io: MSRAP sessions silencing at once")
)

// procWritten reads a process's write_bytes.
func procWritten(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	must(err)
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "write_bytes: "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return 0
}

// storeIO runs the store's three programs on a fresh store and returns
// what each wrote (submitd, notifyd, retrieved) for one message to n
// recipients, and the time from submission to the last silence.
func storeIO(n, silencers int) ([3]int64, time.Duration) {
	tmp, err := os.MkdirTemp("/var/tmp", "im2000-bench-archiveio-")
	must(err)
	defer os.RemoveAll(tmp)
	bin, _ := filepath.Abs(*binDir)
	confDir, storeDir := filepath.Join(tmp, "conf"), filepath.Join(tmp, "store")
	must(os.MkdirAll(confDir, 0o755))
	must(os.MkdirAll(storeDir, 0o755))
	h, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	msrapAddr, msoapAddr := "127.0.0.1:"+freePort(), "127.0.0.1:"+freePort()
	var routes strings.Builder
	var rcpts []wire.MailBox
	for d := 0; d < 10; d++ {
		domain := fmt.Sprintf("d%d.example", d)
		var accounts []string
		for j := 0; j < n/10; j++ {
			accounts = append(accounts, fmt.Sprintf("u%05d", j))
			rcpts = append(rcpts, wire.MailBox{Local: accounts[j], Domain: wire.DomainName{fmt.Sprintf("d%d", d), "example"}})
		}
		a, stop := startAgent(filepath.Join(tmp, "agent"+strconv.Itoa(d)), domain, accounts)
		defer stop()
		fmt.Fprintf(&routes, "_rnasp._tcp.%s %s\n", domain, a)
	}
	for name, v := range map[string]string{
		"passwords": "alice:" + string(h), "me": "example.org", "databytes": "33554432", "maxrcpt": "20000",
		"storelocation": msrapAddr, "sessionsperaddr": "0", "routes": routes.String(), "resend": "86400",
	} {
		must(os.WriteFile(filepath.Join(confDir, name), []byte(strings.TrimSuffix(v, "\n")+"\n"), 0o600))
	}
	env := append(os.Environ(), "IM2000_CONF="+confDir, "IM2000_STORE="+storeDir)
	start := func(addr string, name string, args ...string) *exec.Cmd {
		cmd := exec.Command(filepath.Join(bin, name), args...)
		cmd.Env = env
		must(cmd.Start())
		if addr != "" {
			waitTCP(addr)
		}
		return cmd
	}
	procs := []*exec.Cmd{
		start(msoapAddr, "im2000-submitd", "-l", msoapAddr),
		start("", "im2000-notifyd"),
		start(msrapAddr, "im2000-retrieved", "-l", msrapAddr, "-c", strconv.Itoa(2*silencers)),
	}
	defer func() {
		for _, p := range procs {
			p.Process.Signal(syscall.SIGTERM)
			p.Wait()
		}
	}()
	time.Sleep(500 * time.Millisecond) // notifyd's start-up rebuild of an empty store
	var before [3]int64
	for i, p := range procs {
		before[i] = procWritten(p.Process.Pid)
	}
	t0 := time.Now()
	id := submitTo(msoapAddr, rcpts, sized(10<<10))

	s, err := store.Open(storeDir)
	must(err)
	acct, err := s.Account("alice")
	must(err)
	count := func(want store.Notification) int {
		st, err := acct.Status(id)
		must(err)
		c := 0
		for _, r := range st.Recipients {
			if r.Notification == want {
				c++
			}
		}
		return c
	}
	for count(store.Notifying) < n {
		if time.Since(t0) > 5*time.Minute {
			log("%d of %d notified after 5 minutes", count(store.Notifying), n)
			os.Exit(111)
		}
		time.Sleep(100 * time.Millisecond)
	}
	m, err := acct.Open(id)
	must(err)
	rids := make([]msgid.ID, len(m.Env.Recipients))
	for i, r := range m.Env.Recipients {
		rids[i] = r.ID
	}
	m.Close()
	var wg sync.WaitGroup
	for w := 0; w < silencers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			c, err := session.Dial(context.Background(), msrap.Protocol, msrapAddr, time.Minute)
			must(err)
			defer c.Close()
			for i := w; i < len(rids); i += silencers {
				_, err := session.Expect[msrap.SilenceOK](c, &msrap.Silence{ID: rids[i]})
				must(err)
			}
		}(w)
	}
	wg.Wait()
	took := time.Since(t0)
	if got := count(store.Silenced); got != n {
		log("%d of %d silenced: silences were lost", got, n)
		os.Exit(111)
	}
	time.Sleep(time.Second) // whatever the last event sets off (notifyd's dequeue)
	var out [3]int64
	for i, p := range procs {
		out[i] = procWritten(p.Process.Pid) - before[i]
	}
	return out, took
}

func waitTCP(addr string) {
	for i := 0; i < 200; i++ {
		if c, err := session.Dial(context.Background(), msrap.Protocol, addr, time.Second); err == nil {
			c.Close()
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
	log("%s did not come up", addr)
	os.Exit(111)
}

// submitTo submits msg to rcpts as alice over MSOAP.
func submitTo(addr string, rcpts []wire.MailBox, msg []byte) msgid.ID {
	c, err := session.Dial(context.Background(), msoap.Protocol, addr, time.Minute)
	must(err)
	defer c.Close()
	_, err = session.Expect[msoap.AuthenticateOK](c, &msoap.Authenticate{Account: "alice", Password: "pw"})
	must(err)
	_, err = session.Expect[*msoap.SubmitEnvelopeOK](c, &msoap.SubmitEnvelope{Recipients: rcpts, Lifetime: 86400})
	must(err)
	r, err := session.Expect[*msoap.SubmitMsgChunkOK](c, &msoap.SubmitMsgChunk{IsLast: true, Data: msg})
	must(err)
	if r.ID == nil {
		must(errors.New("the last chunk was answered without an identifier"))
	}
	return *r.ID
}

// postfixMaildirs delivers msg through postfix's smtpd to n virtual
// Maildir recipients and returns the octets written to the disk meanwhile
// (whole system, after a sync) and the time until all were delivered.
func postfixMaildirs(n int, msg []byte) (int64, time.Duration, error) {
	stop, err := startPostfix()
	if err != nil {
		return 0, 0, err
	}
	defer stop()
	base := "/var/tmp/im2000-bench-vmail"
	os.RemoveAll(base)
	defer os.RemoveAll(base)
	if err := os.MkdirAll(base, 0o755); err != nil {
		return 0, 0, err
	}
	os.Chown(base, 5000, 5000)
	var maps strings.Builder
	for j := 0; j < n; j++ {
		fmt.Fprintf(&maps, "u%05d@bench.example bench.example/u%05d/\n", j, j)
	}
	if err := os.WriteFile("/etc/postfix/im2000-bench-vmailbox", []byte(maps.String()), 0o644); err != nil {
		return 0, 0, err
	}
	sh := `postmap /etc/postfix/im2000-bench-vmailbox &&
postconf -e virtual_mailbox_domains=bench.example virtual_mailbox_base=` + base + ` \
  virtual_mailbox_maps=hash:/etc/postfix/im2000-bench-vmailbox virtual_uid_maps=static:5000 \
  virtual_gid_maps=static:5000 virtual_minimum_uid=100 virtual_destination_recipient_limit=` + strconv.Itoa(n) + ` \
  smtpd_recipient_limit=` + strconv.Itoa(n) + ` &&
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
	for j := 0; j < n; j++ {
		if err := c.Rcpt(fmt.Sprintf("u%05d@bench.example", j)); err != nil {
			return 0, 0, err
		}
	}
	w, _ := c.Data()
	w.Write(msg)
	if err := w.Close(); err != nil {
		return 0, 0, err
	}
	c.Quit()
	for done := 0; ; {
		for ; done < n; done++ {
			if ents, err := os.ReadDir(fmt.Sprintf("%s/bench.example/u%05d/new", base, done)); err != nil || len(ents) == 0 {
				break
			}
		}
		if done == n {
			break
		}
		if time.Since(start) > 10*time.Minute {
			return 0, 0, fmt.Errorf("%d of %d delivered after 10 minutes", done, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	took := time.Since(start)
	return diskWritten(base) - before, took, nil
}
