// Command im2000-fetch is the recipient's client: it asks the notification
// agent what is new, retrieves each message from its sender's store,
// delivers it into a Maildir (or to standard output), and only then
// silences it at the store. See man/im2000-fetch.1.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"im2000/lib/agent"
	"im2000/lib/conf"
	"im2000/lib/fail"
	"im2000/lib/inbox"
	"im2000/lib/maildir"
	"im2000/lib/wire/msrap"
)

const usage = `usage: im2000-fetch [-d maildir] [--stdout] [--summary] [--accept key|address|@domain] [-loop seconds]
  Takes your notifications from your agent (the rna and password files of
  $IM2000_CONF), retrieves each message from its store, delivers it, and
  then tells the store you have it.
  -d maildir  deliver into this Maildir (default: the maildir setting, else $HOME/Maildir)
  --stdout    write the messages to standard output as an mbox instead
  --summary   list what is waiting, held or pending, without retrieving anything
  --accept x  fetch a held notification (x: its key from --summary), or all
              from an address or @domain, which the senderpolicy file then allows
  -loop n     run again every n seconds, and on SIGHUP or SIGALRM (a service)
  -h          show this help`

type fetcher struct {
	conf     conf.Dir
	maildir  string
	stdout   *bufio.Writer
	inbox    *inbox.Inbox
	accept   string           // --accept (policy.go)
	outMu    sync.Mutex       // one message at a time on standard output
	logMu    sync.Mutex       // the delivered record
	record   map[string]int64 // the delivered record: key, when (record.go)
	life     time.Duration    // maxlifetime, for the record
	lockFile *os.File         // the run's lock (record.go)
}

func main() {
	fs := flag.NewFlagSet("im2000-fetch", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	dir := fs.String("d", "", "")
	toStdout := fs.Bool("stdout", false, "")
	summary := fs.Bool("summary", false, "")
	accept := fs.String("accept", "", "")
	every := fs.Int("loop", 0, "")
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
	if *summary && *accept != "" {
		fail.Usage("--summary lists, --accept fetches: one at a time\n%s", usage)
	}
	if err := conf.FromEnv().Check(); err != nil {
		logFatal(fail.Perm(err))
	}
	if *every > 0 { // loop.go
		if *summary || *accept != "" || *toStdout {
			fail.Usage("-loop delivers into the Maildir: not with --summary, --accept or --stdout\n%s", usage)
		}
		loop(time.Duration(*every)*time.Second, withoutLoop(os.Args[1:]))
	}
	f, err := setup(conf.FromEnv(), *dir)
	if err != nil {
		logEnd(err)
	}
	defer f.inbox.Close()
	f.accept = *accept
	if *toStdout {
		f.stdout = bufio.NewWriter(os.Stdout)
	}
	err = f.run(*summary)
	f.inbox.Close()
	logEnd(err)
}

func setup(d conf.Dir, dir string) (*fetcher, error) {
	f := &fetcher{conf: d}
	var err error
	if dir == "" {
		home, _ := os.UserHomeDir()
		if dir, err = d.String("maildir", filepath.Join(home, "Maildir")); err != nil {
			return nil, err
		}
	}
	f.maildir = dir
	if err := f.lock(); err != nil {
		return nil, err
	}
	if err := f.readRecord(); err != nil {
		return nil, err
	}
	// Read as lib/inbox reads it: how long a store may keep a message.
	life, err := d.Num("maxlifetime")
	if err != nil {
		return nil, err
	}
	f.life = time.Duration(min(life, 1<<32)) * time.Second
	if f.inbox, err = inbox.Open(d, filepath.Join(dir, ".im2000")); err != nil {
		return nil, err
	}
	return f, nil
}

func (f *fetcher) run(summary bool) error {
	l, err := f.conf.Local()
	if err != nil {
		return err
	}
	where, err := f.conf.Str("rna")
	if err != nil {
		return err
	}
	if where == "" {
		return fail.Perm(fmt.Errorf("write where your notification agent is (host:port, or your domain) to %s", f.conf.Path("rna")))
	}
	password, err := f.conf.Str("password")
	if err != nil {
		return err
	}
	taken, takeErr := f.inbox.Take(where, l.Account, password)
	if fail.Code(takeErr) == fail.Permanent {
		return takeErr
	}
	if takeErr != nil {
		logAgentUnreachable(takeErr, taken)
	}
	entries, err := f.inbox.Pending()
	if err != nil {
		return fail.Temp(err)
	}
	if summary {
		return f.summarize(entries, takeErr) // policy.go
	}
	// Unverified senders' notifications go before any store is contacted.
	entries = f.inbox.Bound(entries, "")
	// The sender policy holds or drops some of them, still before any
	// store is contacted, and releases what the user accepted (policy.go).
	if entries, err = f.screen(entries); err != nil {
		return err
	}
	// Stores are worked at once, each store's entries in order over one
	// session (lib/inbox.PerStore): a store that never answers costs the
	// run one timeout, whatever the number of stores like it.
	var mu sync.Mutex
	delivered, failed, dropped, gone := 0, 0, 0, 0
	notDone := inbox.PerStore(entries, func(_ int, e agent.Entry) {
		err := f.fetchOne(e)
		mu.Lock()
		defer mu.Unlock()
		switch {
		case errors.Is(err, inbox.ErrGone):
			gone++ // fetchOne has logged it
		case errors.Is(err, inbox.ErrDropped):
			dropped++ // lib/inbox has logged why
		case err != nil:
			logKept(e.N.Notification.ID.String(), e.N.Notification.Sender, e.N.Notification.StoreClear.String(), err)
			failed++
		default:
			delivered++
		}
	})
	// A call that panicked (an alert, logged) and the rest of its store's
	// entries: kept for the next run, as a failed store's are.
	failed += len(notDone)
	if f.stdout != nil {
		if err := f.stdout.Flush(); err != nil {
			return fail.Temp(err)
		}
	}
	logFetched(delivered, failed, dropped, gone)
	if left, err := f.inbox.Pending(); err == nil {
		if err := f.pruneRecord(left, f.life); err != nil {
			logNotPruned(err)
		}
	}
	if failed > 0 || dropped > 0 || takeErr != nil {
		return errIncomplete
	}
	return nil
}

// fetchOne retrieves, delivers, records and silences one message. The
// record of delivered notifications makes a second notification of the
// same message (a re-send before the silence got through) a silence only.
// It is called for different stores at once.
func (f *fetcher) fetchOne(e agent.Entry) error {
	n := e.N.Notification
	key := agent.Key(&e.N)
	if !f.delivered(key) {
		sender, err := f.inbox.Sender(e)
		if err != nil {
			return err
		}
		err = f.deliver(sender.String(), e)
		if errors.Is(err, inbox.ErrGone) {
			logGone(n.ID.String(), n.Sender, err)
			f.inbox.Done(e)
			return err
		}
		if err != nil {
			return err
		}
		if err := f.markDelivered(key); err != nil {
			return err
		}
	}
	if err := f.inbox.Silence(e); err != nil {
		if errors.Is(err, inbox.ErrDropped) {
			return err
		}
		return fmt.Errorf("delivered, but silencing failed (will silence next time): %w", err)
	}
	f.inbox.Done(e)
	return nil
}

// deliver retrieves a message, which starts with the trace fields, into
// the Maildir or the mbox; sender is the verified sender, for the mbox's
// From_ line. The message is streamed from the store: into the Maildir's
// tmp/ (lib/maildir.DeliverFrom), or for the mbox into an unlinked file
// first, copied to standard output whole once complete, one message at a
// time.
func (f *fetcher) deliver(sender string, e agent.Entry) error {
	if f.stdout == nil {
		_, err := maildir.DeliverFrom(f.maildir, func(w io.Writer) error {
			_, err := f.inbox.RetrieveTo(e, msrap.All, w)
			return err
		})
		return err
	}
	tmp, err := os.CreateTemp(filepath.Join(f.maildir, ".im2000"), "mbox")
	if err != nil {
		return fail.Temp(err)
	}
	os.Remove(tmp.Name())
	defer tmp.Close()
	bw := bufio.NewWriterSize(tmp, 64<<10)
	if _, err := f.inbox.RetrieveTo(e, msrap.All, bw); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return fail.Temp(err)
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return fail.Temp(err)
	}
	f.outMu.Lock()
	defer f.outMu.Unlock()
	return writeMbox(f.stdout, sender, time.Now(), tmp)
}
