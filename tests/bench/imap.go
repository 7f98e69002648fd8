package main

// The IMAP shim against the POP3 one (issue 19): the time for mbsync to
// pull an INBOX of -imapn messages through im2000-imapd into a Maildir,
// and for mpop to pull the same messages through im2000-pop3d, in
// interleaved rounds, each from a fresh copy of the same pending queue
// (so both fetch every message from the store each round); and a FETCH
// of every message's header with Go's IMAP client, cold (headersonly
// retrievals from the store) and again (from imapd's cache).

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"golang.org/x/crypto/bcrypt"

	"im2000/lib/addr"
	"im2000/lib/agent"
	"im2000/lib/store"
	"im2000/lib/wire"
	"im2000/lib/wire/rnaqp"
	"im2000/lib/wire/rnasp"
)

var imapN = flag.Int("imapn", 1000, "messages in the INBOX of the imap section")

func benchIMAP() {
	for _, tool := range []string{"mbsync", "mpop"} {
		if _, err := exec.LookPath(tool); err != nil {
			log("imap: %s is not installed: run tests/deps.sh", tool)
			os.Exit(111)
		}
	}
	dir, err := os.MkdirTemp(benchDir(), "imap")
	must(err)
	defer os.RemoveAll(dir)
	bin, _ := filepath.Abs(*binDir)
	write := func(path, s string) {
		must(os.MkdirAll(filepath.Dir(path), 0o700))
		must(os.WriteFile(path, []byte(s), 0o600))
	}

	// Alice's store, with the messages for bob, and its MSRAP server.
	must(os.MkdirAll(filepath.Join(dir, "store"), 0o700))
	st, err := store.Open(filepath.Join(dir, "store"))
	must(err)
	a, err := st.Account("alice")
	must(err)
	bob, _ := addr.Parse("bob@example.net")
	msrap := "127.0.0.1:" + freePort()
	loc, err := netipLocation(msrap)
	must(err)
	write(filepath.Join(dir, "storeconf", "me"), "example.org\n")
	retrieved := start(bin, "im2000-retrieved", msrap, "IM2000_CONF="+filepath.Join(dir, "storeconf"), "IM2000_STORE="+filepath.Join(dir, "store"))
	defer retrieved()

	// Bob's agent (queryd; it has nothing new for him: the notifications
	// are in the readers' pending queues already).
	h, _ := bcrypt.GenerateFromPassword([]byte("bobpw"), bcrypt.MinCost)
	write(filepath.Join(dir, "agentconf", "passwords"), "bob:"+string(h)+"\n")
	write(filepath.Join(dir, "agentconf", "me"), "example.net\n")
	must(os.MkdirAll(filepath.Join(dir, "agent", "bob"), 0o700))
	rnaqpAddr := "127.0.0.1:" + freePort()
	queryd := start(bin, "im2000-queryd", rnaqpAddr, "IM2000_CONF="+filepath.Join(dir, "agentconf"), "IM2000_AGENT="+filepath.Join(dir, "agent"))
	defer queryd()

	// The pending queue, written once, copied for each round.
	template := filepath.Join(dir, "template")
	must(os.MkdirAll(filepath.Join(template, "pending"), 0o700))
	sp, err := agent.Open(template, false)
	must(err)
	log("imap: committing %d messages", *imapN)
	for range *imapN {
		env := commitTo(a, []addr.Mailbox{bob}, message)
		size := uint64(len(message))
		n := rnaqp.NotificationAndLocalData{Date: uint64(time.Now().Unix()), Notification: rnasp.Notification{
			StoreClear: loc, ID: env.Recipients[0].ID, Sender: "alice@example.org", Size: &size,
			Recipient: wire.MailBox{Local: "bob", Domain: wire.DomainName{"example", "net"}}}}
		must(sp.Put("pending", &n))
	}

	conf := filepath.Join(dir, "conf")
	write(filepath.Join(conf, "rna"), rnaqpAddr+"\n")
	write(filepath.Join(conf, "me"), "example.net\n")
	write(filepath.Join(conf, "routes"), "_msrap._tcp.example.org "+msrap+"\n")
	write(filepath.Join(conf, "imapstate"), filepath.Join(dir, "imap")+"\n")
	write(filepath.Join(conf, "pop3state"), filepath.Join(dir, "pop3")+"\n")
	write(filepath.Join(conf, "sessionlifetime"), "0\n")
	env := []string{"IM2000_CONF=" + conf}
	imapAddr, popAddr := "127.0.0.1:"+freePort(), "127.0.0.1:"+freePort()
	stopIMAP := startTCP(bin, "im2000-imapd", imapAddr, env...)
	defer stopIMAP()
	stopPOP := startTCP(bin, "im2000-pop3d", popAddr, env...)
	defer stopPOP()

	fresh := func(state string) {
		must(os.RemoveAll(filepath.Join(dir, state)))
		must(os.MkdirAll(filepath.Join(dir, state), 0o700))
		must(exec.Command("cp", "-a", template, filepath.Join(dir, state, "bob")).Run())
		os.RemoveAll(filepath.Join(dir, "mail"))
		must(os.MkdirAll(filepath.Join(dir, "mail", "INBOX"), 0o700))
		for _, d := range []string{"tmp", "new", "cur"} {
			must(os.MkdirAll(filepath.Join(dir, "mail", "INBOX", d), 0o700))
		}
	}
	_, imapPort, _ := cut(imapAddr)
	_, popPort, _ := cut(popAddr)
	write(filepath.Join(dir, "mbsyncrc"), "IMAPAccount bob\nHost 127.0.0.1\nPort "+imapPort+"\nUser bob\nPass bobpw\nSSLType None\nAuthMechs LOGIN\n\nIMAPStore remote\nAccount bob\n\nMaildirStore local\nPath "+filepath.Join(dir, "mail")+"/\nInbox "+filepath.Join(dir, "mail", "INBOX")+"\n\nChannel inbox\nFar :remote:INBOX\nNear :local:INBOX\nSync Pull\nExpunge None\nSyncState *\n")
	write(filepath.Join(dir, "mpoprc"), "account default\nhost 127.0.0.1\nport "+popPort+"\nuser bob\npassword bobpw\nauth user\ntls off\ndelivery maildir "+filepath.Join(dir, "mail", "INBOX")+"\nkeep on\nuidls_file "+filepath.Join(dir, "uidls")+"\n")
	count := func() error {
		got, _ := filepath.Glob(filepath.Join(dir, "mail", "INBOX", "*", "*"))
		if len(got) != *imapN {
			return fmt.Errorf("%d messages delivered, want %d", len(got), *imapN)
		}
		return nil
	}
	rows := []*row{
		{name: fmt.Sprintf("mbsync pulls %d messages through im2000-imapd", *imapN), unit: "msg/s", f: func() (float64, error) {
			fresh("imap")
			rate, err := timed(float64(*imapN), func() error {
				if out, err := exec.Command("mbsync", "-c", filepath.Join(dir, "mbsyncrc"), "-a").CombinedOutput(); err != nil {
					return fmt.Errorf("mbsync: %v: %s", err, out)
				}
				return nil
			})
			if err == nil {
				err = count()
			}
			return rate, err
		}},
		{name: fmt.Sprintf("mpop pulls %d messages through im2000-pop3d", *imapN), unit: "msg/s", f: func() (float64, error) {
			fresh("pop3")
			os.Remove(filepath.Join(dir, "uidls"))
			rate, err := timed(float64(*imapN), func() error {
				if out, err := exec.Command("mpop", "-C", filepath.Join(dir, "mpoprc"), "-q").CombinedOutput(); err != nil {
					return fmt.Errorf("mpop: %v: %s", err, out)
				}
				return nil
			})
			if err == nil {
				err = count()
			}
			return rate, err
		}},
		{name: fmt.Sprintf("FETCH of %d headers (BODY.PEEK[HEADER]), from the store", *imapN), unit: "msg/s", f: func() (float64, error) {
			fresh("imap")
			return fetchHeaders(imapAddr)
		}},
		{name: "the same FETCH again, from imapd's cache", unit: "msg/s", f: func() (float64, error) {
			return fetchHeaders(imapAddr)
		}},
	}
	measure(rows)
	table(fmt.Sprintf("IMAP and POP3 shims, %d messages of %d octets", *imapN, len(message)), rows)
	fmt.Printf("\nmbsync through imapd takes %.2fx the time of mpop through pop3d (medians).\n", median(rows[1].rates)/median(rows[0].rates))
}

func fetchHeaders(addr string) (float64, error) {
	c, err := imapclient.DialInsecure(addr, nil)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	if err := c.Login("bob", "bobpw").Wait(); err != nil {
		return 0, err
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		return 0, err
	}
	got := 0
	rate, err := timed(float64(*imapN), func() error {
		set := imap.SeqSet{}
		set.AddRange(1, 0)
		msgs, err := c.Fetch(set, &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{{Specifier: imap.PartSpecifierHeader, Peek: true}}}).Collect()
		got = len(msgs)
		return err
	})
	if err == nil && got != *imapN {
		err = fmt.Errorf("%d headers fetched, want %d", got, *imapN)
	}
	return rate, err
}

func cut(hostport string) (string, string, bool) {
	for i := len(hostport) - 1; i >= 0; i-- {
		if hostport[i] == ':' {
			return hostport[:i], hostport[i+1:], true
		}
	}
	return hostport, "", false
}

// start runs a server listening itself on addr.
func start(bin, prog, addr string, env ...string) func() {
	cmd := exec.Command(filepath.Join(bin, prog), "-l", addr)
	cmd.Env = append(os.Environ(), env...)
	must(cmd.Start())
	waitTCP(addr)
	return func() { cmd.Process.Kill(); cmd.Wait() }
}

// startTCP runs a server under tcpserver, one process a session, as a
// deployment runs the shims.
func startTCP(bin, prog, addr string, env ...string) func() {
	host, port, _ := cut(addr)
	cmd := exec.Command("tcpserver", "-RHl0", host, port, filepath.Join(bin, prog))
	cmd.Env = append(os.Environ(), env...)
	must(cmd.Start())
	waitTCP(addr)
	return func() { cmd.Process.Kill(); cmd.Wait() }
}
