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
  (the rnasp file) of every new post. Scans every listinterval seconds; on
  SIGHUP re-reads its settings and scans at once; runs until SIGTERM, under
  a supervisor.
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
	timeout  time.Duration // to connect, and for each answer
	files    map[string]string
}

// settingFiles are the settings listd reads, at start and again on SIGHUP:
// their contents tell what a SIGHUP changed.
var settingFiles = []string{"me", "rnasp", "listdstate", "listinterval", "timeout", "routes", "resolvers", "listfile"}

// maxRounds bounds the ScanList round trips of one list in one pass, so
// that a store that never runs out of posts cannot hold listd; the scan
// goes on from where it got to in the next pass.
const maxRounds = 100

func main() {
	fail.NoArgs(usage)
	d := conf.FromEnv()
	l, err := load(d)
	if err != nil {
		logFatal(err)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	logSettings(d)
	logFollowing(l.reader, l.interval)
	for {
		l.pass()
		select {
		case s := <-sig:
			if s != syscall.SIGHUP {
				logStopping(s)
				os.Exit(0)
			}
			l = l.reload(d)
		case <-time.After(l.interval):
		}
	}
}

// reload re-reads every setting, logs what changed, and returns the
// listd to go on with: the old one when the new settings do not load.
func (l *listd) reload(d conf.Dir) *listd {
	n, err := load(d)
	if err != nil {
		logReloadFailed(err)
		return l
	}
	changed := 0
	for _, name := range settingFiles {
		was, is := l.files[name], n.files[name]
		if was == is {
			continue
		}
		changed++
		switch name {
		case "routes", "resolvers", "listfile":
			logChangedList(name, lines(is), lines(was))
		default:
			logChanged(name, shown(was), shown(is))
		}
	}
	if changed == 0 {
		logUnchanged()
	}
	logSettings(d)
	return n
}

// shown is a one-value setting as the log shows it: its first line.
func shown(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if s = strings.TrimSpace(s); s == "" {
		return "(default)"
	}
	return strconv.Quote(s)
}

// lines counts the lines of a setting that count (conf.Dir.Lines).
func lines(s string) int {
	n := 0
	for _, line := range strings.Split(s, "\n") {
		if line = strings.TrimSpace(line); line != "" && line[0] != '#' {
			n++
		}
	}
	return n
}

func load(d conf.Dir) (*listd, error) {
	l := &listd{conf: d, files: map[string]string{}}
	for _, name := range settingFiles {
		b, err := os.ReadFile(d.Path(name))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		l.files[name] = string(b)
	}
	local, err := d.Local()
	if err != nil {
		return nil, err
	}
	if l.timeout, err = session.ClientTimeout(d); err != nil {
		return nil, err
	}
	if l.reader, err = addr.Parse(local.Account + "@" + local.Me); err != nil {
		return nil, fmt.Errorf("reader %s@%s: %v", local.Account, local.Me, err)
	}
	if l.loc, err = locate.FromConf(d); err != nil {
		return nil, err
	}
	if l.rna, err = d.Str("rnasp"); err != nil {
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
	secs, err := d.Num("listinterval")
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
			logBadLine(l.conf.Path("listfile"), line)
			continue
		}
		out = append(out, follow{name: strings.ToLower(f[0]), where: f[1], backfill: len(f) == 3})
	}
	return out, nil
}

// pass scans every followed list once. A panic ends the scan of its list
// (or the pass) with an alert, never listd.
func (l *listd) pass() {
	defer fail.Recover("a pass over the list file")
	follows, err := l.follows()
	if err != nil {
		logNoListfile(err)
		return
	}
	for _, f := range follows {
		l.scanOne(f)
	}
}

func (l *listd) scanOne(f follow) {
	defer fail.Recover(fmt.Sprintf("the scan of list %s at %s", f.name, f.where))
	if err := l.scan(f); err != nil {
		logScanFailed(f.name, f.where, err)
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
	for round := 0; round < maxRounds; round++ {
		r, err := session.Expect[*msrap.ScanListOK](st, &msrap.ScanList{ListName: f.name, BeginTime: begin})
		if err != nil {
			return err
		}
		if r.EndTime < begin {
			return fmt.Errorf("MSRAP: %w: a scan from %d answered with an earlier endtime, %d", session.ErrProtocol, begin, r.EndTime)
		}
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
	return nil
}

// listDomain is the sender's domain of list notifications whose store is
// not named by a domain: reserved by RFC 2606, it names nobody.
const listDomain = "lists.invalid"

// sender is the sender of the notifications for the posts of list f: the
// mailbox NAME@DOMAIN, DOMAIN being the store's location when the list
// file names it by a domain, else lists.invalid. Agents refuse a sender
// that is not a mailbox, and a reader tells a list's notifications by this
// form: a local part that is a list of its list file, and that list's
// location as the notification's.
func sender(f follow, loc wire.ServiceLocation) string {
	if loc.Domain != nil {
		if m, err := addr.New(f.name, loc.Domain); err == nil {
			return m.String()
		}
	}
	return addr.Mailbox{Local: f.name, Domain: listDomain}.String()
}

// notify hands the posts of one scan to the reader's agent, in batches.
func (l *listd) notify(rna *session.Client, f follow, r *msrap.ScanListOK) error {
	loc, err := wire.ParseLocation(f.where)
	if err != nil {
		return err
	}
	from := sender(f, loc)
	for start := 0; start < len(r.Messages); start += 1000 {
		cmd := &rnasp.Notify{}
		for _, id := range r.Messages[start:min(start+1000, len(r.Messages))] {
			cmd.Notifications = append(cmd.Notifications, rnasp.Notification{StoreClear: loc,
				Recipient: wire.FromAddr(l.reader), ID: id, Sender: from})
		}
		r, err := session.Expect[*rnasp.NotifyOK](rna, cmd)
		if err != nil {
			return fmt.Errorf("agent %s: %w", l.rna, err)
		}
		if len(r.Results) != 0 && len(r.Results) != len(cmd.Notifications) {
			return fmt.Errorf("agent %s: RNASP: %w: %d results for %d notifications", l.rna, session.ErrProtocol, len(r.Results), len(cmd.Notifications))
		}
		for _, res := range r.Results {
			switch res {
			case rnasp.Accepted:
			case rnasp.NoUser:
				return fmt.Errorf("agent %s does not know %s (nouser)", l.rna, l.reader)
			case rnasp.Refused:
				return fmt.Errorf("agent %s refused a notification from %s (refused)", l.rna, from)
			default:
				return fmt.Errorf("agent %s: result %d for a notification", l.rna, res)
			}
		}
	}
	logPosts(f.name, f.where, len(r.Messages), l.reader)
	return nil
}
