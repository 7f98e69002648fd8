// Command im2000-fetch is the recipient's client: it asks the notification
// agent what is new, retrieves each message from its sender's store,
// delivers it into a Maildir (or to standard output), and only then
// silences it at the store. See man/im2000-fetch.1.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"im2000/lib/agent"
	"im2000/lib/conf"
	"im2000/lib/durable"
	"im2000/lib/fail"
	"im2000/lib/locate"
	"im2000/lib/maildir"
	"im2000/lib/session"
	"im2000/lib/wire"
	"im2000/lib/wire/msrap"
	"im2000/lib/wire/rnaqp"
)

const usage = `usage: im2000-fetch [-d maildir] [--stdout] [--summary]
  Takes your notifications from your agent (the rna and password files of
  $IM2000_CONF), retrieves each message from its store, delivers it, and
  then tells the store you have it.
  -d maildir  deliver into this Maildir (default: the maildir setting, else $HOME/Maildir)
  --stdout    write the messages to standard output as an mbox instead
  --summary   list what is waiting without retrieving anything
  -h          show this help`

type fetcher struct {
	conf    conf.Dir
	loc     *locate.Locator
	maildir string
	stdout  *bufio.Writer
	pending *agent.Spool // notifications taken from the agent, not yet done
	timeout time.Duration
}

func main() {
	fs := flag.NewFlagSet("im2000-fetch", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	dir := fs.String("d", "", "")
	toStdout := fs.Bool("stdout", false, "")
	summary := fs.Bool("summary", false, "")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Println(usage)
			os.Exit(0)
		}
		fail.Usage("%v\n%s", err, usage)
	}
	if fs.NArg() > 0 {
		fail.Usage("unexpected argument %q\n%s", fs.Arg(0), usage)
	}
	f, err := setup(conf.FromEnv(), *dir)
	if err != nil {
		fail.Exit(err)
	}
	if *toStdout {
		f.stdout = bufio.NewWriter(os.Stdout)
	}
	fail.Exit(f.run(*summary))
}

func setup(d conf.Dir, dir string) (*fetcher, error) {
	f := &fetcher{conf: d, timeout: time.Minute}
	var err error
	if f.loc, err = locate.FromConf(d); err != nil {
		return nil, err
	}
	if dir == "" {
		home, _ := os.UserHomeDir()
		if dir, err = d.String("maildir", filepath.Join(home, "Maildir")); err != nil {
			return nil, err
		}
	}
	f.maildir = dir
	state := filepath.Join(dir, ".im2000")
	if err := os.MkdirAll(filepath.Join(state, "pending"), 0o700); err != nil {
		return nil, fail.Temp(err)
	}
	if f.pending, err = agent.Open(state, true); err != nil {
		return nil, fail.Temp(err)
	}
	return f, nil
}

func (f *fetcher) run(summary bool) error {
	account := os.Getenv("IM2000_ACCOUNT")
	if account == "" {
		l, err := f.conf.Local()
		if err != nil {
			return err
		}
		account = l.Account
	}
	taken, takeErr := f.take(account)
	if takeErr != nil {
		fail.Warn("%v (going on with the %d notifications kept from before)", takeErr, taken)
	}
	entries, err := f.pending.List("pending", 1<<30)
	if err != nil {
		return fail.Temp(err)
	}
	if summary {
		for _, e := range entries {
			n := e.N.Notification
			size := "?"
			if n.Size != nil {
				size = fmt.Sprint(*n.Size)
			}
			fmt.Printf("%s\t%s\t%s\t%s\n", time.Unix(int64(e.N.Date), 0).UTC().Format(time.RFC3339), n.Sender, size, n.StoreClear.String())
		}
		return takeErr
	}
	delivered, failed := 0, 0
	stores := map[string]*session.Client{}
	defer func() {
		for _, c := range stores {
			c.Close()
		}
	}()
	for _, e := range entries {
		if err := f.fetchOne(stores, e); err != nil {
			fail.Warn("%s from %s at %s: %v (kept for the next run)", e.N.Notification.ID.String(), e.N.Notification.Sender, e.N.Notification.StoreClear.String(), err)
			failed++
			continue
		}
		delivered++
	}
	if f.stdout != nil {
		if err := f.stdout.Flush(); err != nil {
			return fail.Temp(err)
		}
	}
	fail.Warn("%d delivered, %d kept for later", delivered, failed)
	if failed > 0 || takeErr != nil {
		return fail.Temp(errors.New("not everything could be fetched; run again later"))
	}
	return nil
}

// take moves the agent's notifications into the local pending queue.
func (f *fetcher) take(account string) (int, error) {
	where, err := f.conf.String("rna", "")
	if err != nil {
		return 0, err
	}
	if where == "" {
		return 0, fail.Perm(fmt.Errorf("write where your notification agent is (host:port, or your domain) to %s", f.conf.Path("rna")))
	}
	password, err := f.conf.String("password", "")
	if err != nil {
		return 0, err
	}
	c, err := f.dial(rnaqp.Protocol, where)
	if err != nil {
		return 0, fail.Temp(fmt.Errorf("agent %s: %w", where, err))
	}
	defer c.Close()
	if _, err := c.Call(&rnaqp.Authenticate{Account: account, Password: password}); err != nil {
		return 0, fail.Perm(fmt.Errorf("agent %s: authenticate as %s: %w", where, account, err))
	}
	n := 0
	for {
		pdu, err := c.Call(rnaqp.RetrieveAndClear{})
		if err != nil {
			return n, fail.Temp(fmt.Errorf("agent %s: %w", where, err))
		}
		got := pdu.Response.(*rnaqp.RetrieveAndClearOK).Notifications
		if len(got) == 0 {
			return n, nil
		}
		for i := range got {
			if err := f.pending.Put("pending", &got[i]); err != nil {
				// The store re-sends it: a delay, not a loss.
				return n, fail.Temp(err)
			}
			n++
		}
	}
}

// dial reaches a server by host:port, or by a domain's SRV records.
func (f *fetcher) dial(p *wire.Protocol, where string) (*session.Client, error) {
	ctx, cancel := context.WithTimeout(context.Background(), f.timeout)
	defer cancel()
	return session.DialWhere(ctx, f.loc, p, where, f.timeout)
}

// store returns a session with the store a notification names.
func (f *fetcher) store(stores map[string]*session.Client, l wire.ServiceLocation) (*session.Client, error) {
	key := l.String()
	if c, ok := stores[key]; ok {
		return c, nil
	}
	var c *session.Client
	var err error
	if l.Domain != nil {
		c, err = f.dial(msrap.Protocol, key)
	} else {
		for _, a := range l.Literals {
			if c, err = f.dial(msrap.Protocol, a.String()); err == nil {
				break
			}
		}
		if c == nil && err == nil {
			err = errors.New("no address")
		}
	}
	if err != nil {
		return nil, err
	}
	stores[key] = c
	return c, nil
}

// fetchOne retrieves, delivers, records and silences one message. The
// record of delivered notifications makes a second notification of the
// same message (a re-send before the silence got through) a silence only.
func (f *fetcher) fetchOne(stores map[string]*session.Client, e agent.Entry) error {
	n := e.N.Notification
	key := agent.Key(&e.N)
	c, err := f.store(stores, n.StoreClear)
	if err != nil {
		return err
	}
	if !f.delivered(key) {
		var msg []byte
		for {
			pdu, err := c.Call(&msrap.Retrieve{ID: n.ID, Type: msrap.All, Offset: uint64(len(msg))})
			var se *session.StatusError
			if errors.As(err, &se) && se.Status == msrap.ErrorNoSuchMessage {
				fail.Warn("%s from %s: gone from its store (cancelled or expired)", n.ID, n.Sender)
				f.pending.Remove("pending", []agent.Entry{e})
				return nil
			}
			if err != nil {
				delete(stores, n.StoreClear.String())
				c.Close()
				return err
			}
			r := pdu.Response.(*msrap.RetrieveOK)
			msg = append(msg, r.Data...)
			if uint64(len(msg)) >= r.Size || len(r.Data) == 0 {
				if uint64(len(msg)) != r.Size {
					return fmt.Errorf("retrieved %d of %d octets", len(msg), r.Size)
				}
				break
			}
		}
		if err := f.deliver(n.Sender, msg); err != nil {
			return err
		}
		if err := f.markDelivered(key); err != nil {
			return err
		}
	}
	if _, err := c.Call(&msrap.Silence{ID: n.ID}); err != nil {
		return fmt.Errorf("delivered, but silencing failed (will silence next time): %w", err)
	}
	f.pending.Remove("pending", []agent.Entry{e})
	return nil
}

func (f *fetcher) deliver(sender string, msg []byte) error {
	if f.stdout == nil {
		_, err := maildir.Deliver(f.maildir, msg)
		return err
	}
	// mboxrd: a From_ line, and ">" before lines that look like one.
	fmt.Fprintf(f.stdout, "From %s %s\n", sender, time.Now().UTC().Format("Mon Jan _2 15:04:05 2006"))
	for _, line := range strings.SplitAfter(strings.ReplaceAll(string(msg), "\r\n", "\n"), "\n") {
		if strings.HasPrefix(strings.TrimLeft(line, ">"), "From ") {
			f.stdout.WriteString(">")
		}
		f.stdout.WriteString(line)
	}
	if !strings.HasSuffix(string(msg), "\n") {
		f.stdout.WriteString("\n")
	}
	_, err := f.stdout.WriteString("\n")
	return err
}

func (f *fetcher) logPath() string { return filepath.Join(f.maildir, ".im2000", "delivered") }

func (f *fetcher) delivered(key string) bool {
	b, err := os.ReadFile(f.logPath())
	return err == nil && strings.Contains(string(b), key+"\n")
}

// markDelivered appends the key to the delivered record, durably: it is
// what keeps a message from being delivered twice.
func (f *fetcher) markDelivered(key string) error {
	fh, err := os.OpenFile(f.logPath(), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	_, err = fh.WriteString(key + "\n")
	if err == nil {
		err = fh.Sync()
	}
	if cerr := fh.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = durable.SyncDir(filepath.Dir(f.logPath()))
	}
	return err
}
