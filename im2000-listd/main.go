// Command im2000-listd follows mailing lists for one reader: it scans each
// list in the reader's list file at the store that hosts it (MSRAP
// ScanList), and hands every new post to the reader's notification agent
// (RNASP), so that im2000-fetch delivers list mail with personal mail.
// The store learns nothing of who reads. See man/im2000-listd.8.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"im2000/lib/addr"
	"im2000/lib/conf"
	"im2000/lib/durable"
	"im2000/lib/fail"
	"im2000/lib/locate"
	"im2000/lib/session"
	"im2000/lib/store"
	"im2000/lib/wire"
	"im2000/lib/wire/msrap"
	"im2000/lib/wire/rnasp"
)

const usage = `usage: im2000-listd
  Follows the lists named in the listfile of $IM2000_CONF for the reader
  IM2000_ACCOUNT (or the login name) at me, and notifies the reader's agent
  (the rnasp file) of every new post. Scans every listinterval seconds and
  at once on SIGHUP; runs until SIGTERM, under a supervisor.
  -h  show this help`

type follow struct {
	name     string
	where    string // the hosting store's MSRAP: host:port or a domain
	backfill bool
}

type listd struct {
	conf     conf.Dir
	loc      *locate.Locator
	reader   addr.Mailbox
	rna      string
	state    string // directory of positions, one file per followed list
	interval time.Duration
	timeout  time.Duration
}

func main() {
	fail.NoArgs(usage)
	l, err := load(conf.FromEnv())
	if err != nil {
		fail.Exit(fail.Temp(err))
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	fail.Warn("following the lists of %s, every %v", l.reader, l.interval)
	for {
		l.scanAll()
		select {
		case s := <-sig:
			if s != syscall.SIGHUP {
				fail.Warn("stopping")
				os.Exit(0)
			}
		case <-time.After(l.interval):
		}
	}
}

func load(d conf.Dir) (*listd, error) {
	local, err := d.Local()
	if err != nil {
		return nil, err
	}
	l := &listd{conf: d, timeout: time.Minute}
	if l.reader, err = addr.Parse(local.Account + "@" + local.Me); err != nil {
		return nil, fmt.Errorf("reader %s@%s: %v", local.Account, local.Me, err)
	}
	if l.loc, err = locate.FromConf(d); err != nil {
		return nil, err
	}
	if l.rna, err = d.String("rnasp", ""); err != nil {
		return nil, err
	}
	if l.rna == "" {
		l.rna = local.Me // the reader's own domain, by _rnasp._tcp SRV records
	}
	home, _ := os.UserHomeDir()
	if l.state, err = d.String("listdstate", filepath.Join(home, ".im2000-listd")); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(l.state, 0o700); err != nil {
		return nil, err
	}
	secs, err := d.Int("listinterval", 300)
	if err != nil {
		return nil, err
	}
	l.interval = time.Duration(max(secs, 1)) * time.Second
	return l, nil
}

// follows reads the list file: "name store [backfill]" per line.
func (l *listd) follows() ([]follow, error) {
	lines, err := l.conf.Lines("listfile")
	if err != nil {
		return nil, err
	}
	var out []follow
	for _, line := range lines {
		f := strings.Fields(line)
		if len(f) < 2 || len(f) > 3 || (len(f) == 3 && f[2] != "backfill") || store.CheckListName(strings.ToLower(f[0])) != nil {
			fail.Warn("%s: %q: want \"list store [backfill]\"; skipped", l.conf.Path("listfile"), line)
			continue
		}
		out = append(out, follow{name: strings.ToLower(f[0]), where: f[1], backfill: len(f) == 3})
	}
	return out, nil
}

func (l *listd) scanAll() {
	follows, err := l.follows()
	if err != nil {
		fail.Warn("%v", err)
		return
	}
	for _, f := range follows {
		if err := l.scan(f); err != nil {
			fail.Warn("list %s at %s: %v (trying again next time)", f.name, f.where, err)
		}
	}
}

// statePath names the file holding where the scan of f resumes.
func (l *listd) statePath(f follow) string {
	return filepath.Join(l.state, f.name+"@"+strings.NewReplacer("/", "_", ":", "_").Replace(f.where))
}

// position reads where to resume; a list seen for the first time starts
// now (or at the beginning, with backfill), and that is recorded at once.
func (l *listd) position(f follow) (uint64, error) {
	b, err := os.ReadFile(l.statePath(f))
	if err == nil {
		return strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	}
	if !errors.Is(err, os.ErrNotExist) {
		return 0, err
	}
	var begin uint64
	if !f.backfill {
		begin = uint64(time.Now().Unix())
	}
	return begin, l.record(f, begin)
}

// record durably moves the position forward: a crash before it re-sends
// notifications (which agents and fetch absorb), never skips a post.
func (l *listd) record(f follow, begin uint64) error {
	return durable.WriteFile(l.statePath(f), []byte(strconv.FormatUint(begin, 10)+"\n"), 0o600, l.state)
}

func (l *listd) dial(p *wire.Protocol, where string) (*session.Client, error) {
	ctx, cancel := context.WithTimeout(context.Background(), l.timeout)
	defer cancel()
	return session.DialWhere(ctx, l.loc, p, where, l.timeout)
}

func (l *listd) scan(f follow) error {
	begin, err := l.position(f)
	if err != nil {
		return err
	}
	st, err := l.dial(msrap.Protocol, f.where)
	if err != nil {
		return err
	}
	defer st.Close()
	var rna *session.Client
	defer func() {
		if rna != nil {
			rna.Close()
		}
	}()
	for {
		pdu, err := st.Call(&msrap.ScanList{ListName: f.name, BeginTime: begin})
		if err != nil {
			return err
		}
		r := pdu.Response.(*msrap.ScanListOK)
		if len(r.Messages) > 0 {
			if rna == nil {
				if rna, err = l.dial(rnasp.Protocol, l.rna); err != nil {
					return fmt.Errorf("agent %s: %w", l.rna, err)
				}
			}
			if err := l.notify(rna, f, r); err != nil {
				return err
			}
		}
		if r.EndTime == begin || len(r.Messages) == 0 {
			if r.EndTime != begin {
				return l.record(f, r.EndTime)
			}
			return nil
		}
		if err := l.record(f, r.EndTime); err != nil {
			return err
		}
		begin = r.EndTime
	}
}

// notify hands the posts of one scan to the reader's agent, in batches.
func (l *listd) notify(rna *session.Client, f follow, r *msrap.ScanListOK) error {
	loc, err := wire.ParseLocation(f.where)
	if err != nil {
		return err
	}
	for start := 0; start < len(r.Messages); start += 1000 {
		cmd := &rnasp.Notify{}
		for _, id := range r.Messages[start:min(start+1000, len(r.Messages))] {
			cmd.Notifications = append(cmd.Notifications, rnasp.Notification{StoreClear: loc,
				Recipient: wire.FromAddr(l.reader), ID: id, Sender: f.name})
		}
		pdu, err := rna.Call(cmd)
		if err != nil {
			return fmt.Errorf("agent %s: %w", l.rna, err)
		}
		for _, res := range pdu.Response.(*rnasp.NotifyOK).Results {
			if res != rnasp.Accepted {
				return fmt.Errorf("agent %s does not know %s (nouser)", l.rna, l.reader)
			}
		}
	}
	fail.Warn("list %s at %s: %d new posts for %s", f.name, f.where, len(r.Messages), l.reader)
	return nil
}
