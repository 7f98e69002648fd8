// Command im2000-status shows the originator what became of the messages in
// its archive: the delivery status the store keeps per recipient, which is
// all IM2000 has instead of bounces. See man/im2000-status.1.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"

	"im2000/lib/conf"
	"im2000/lib/fail"
	"im2000/lib/mailmsg"
	"im2000/lib/msgid"
	"im2000/lib/remote"
	"im2000/lib/store"
)

const usage = `usage: im2000-status [--pending] [--failed] [--since WHEN] [--queue] [--json] [id]
       im2000-status --cancel id
       im2000-status --resend id
  Without id: one row per message in your archive, oldest first.
  With id: one row per recipient of that message.
  --pending     only messages the store is still notifying
  --failed      only messages with a recipient that failed for good
  --since WHEN  only messages submitted since WHEN: a date (2006-01-02),
                a time (2006-01-02T15:04:05Z07:00) or an age (90m, 36h, 7d)
  --queue       a summary of what waits: counts per state and destination,
                the oldest message waiting, the next attempt
  --json        JSON for scripts instead of a table
  --cancel id   withdraw the message: nobody can retrieve it any more
  --resend id   notify every recipient who has not silenced again, now,
                or resendfloor seconds after its last notification
  -h            show this help`

// recipientView and messageView are the JSON form, and what the tables show.
type recipientView struct {
	Address      string     `json:"address"`
	Notification string     `json:"notification"`
	Read         string     `json:"read"`
	Pinned       bool       `json:"pinned"`
	Attempts     *int64     `json:"attempts,omitempty"` // unknown for a remote store
	Last         *time.Time `json:"last,omitempty"`
	Next         *time.Time `json:"next,omitempty"`
	Via          string     `json:"via,omitempty"`       // state smtp: the relay (host:port) that took it (smtp.go)
	ViaReply     string     `json:"via_reply,omitempty"` // and its reply to the message's final dot
}

type listView struct {
	Name       string `json:"name"`
	Retrievals int64  `json:"retrievals"`
}

type messageView struct {
	ID        string    `json:"id"`
	Submitted time.Time `json:"submitted,omitzero"` // zero: unknown (a remote store's Track does not say)
	Expires   time.Time `json:"expires,omitzero"`
	// ExpiresAsked: Expires is the submitted time plus the lifetime asked
	// of a remote store (the sent log's), which may have kept it for less.
	ExpiresAsked bool            `json:"expires_asked,omitempty"`
	Sender       string          `json:"sender"`
	Subject      string          `json:"subject"`
	Size         int64           `json:"size"`
	Recipients   []recipientView `json:"recipients"`
	Lists        []listView      `json:"lists"`
	pending      bool
	failed       bool
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

func view(a *store.Account, id msgid.ID) (*messageView, error) {
	m, err := a.Open(id)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	st, err := a.Status(id)
	if err != nil {
		return nil, err
	}
	v := &messageView{ID: id.String(), Submitted: m.Env.Submitted.UTC(), Expires: m.Env.Expires().UTC(),
		Sender: m.Env.Sender.String(), Size: m.Size(), Recipients: []recipientView{}, Lists: []listView{}}
	if hdr, err := mailmsg.Read(bufio.NewReader(io.LimitReader(m.Body(), mailmsg.MaxHeader))); err == nil {
		v.Subject, _ = hdr.Header.Subject()
	}
	for i, r := range st.Recipients {
		if i >= len(m.Env.Recipients) {
			break
		}
		v.Recipients = append(v.Recipients, recipientView{Address: m.Env.Recipients[i].Addr.String(),
			Notification: r.Notification.String(), Read: r.Read.String(), Pinned: r.Pinned,
			Attempts: &r.Attempts, Last: timePtr(r.Last), Next: timePtr(r.Next)})
		v.pending = v.pending || !r.Notification.Final()
		v.failed = v.failed || r.Notification.Failed()
	}
	viaSMTP(a, m.Env, st, v)
	for i, l := range st.Lists {
		if i < len(m.Env.Lists) {
			v.Lists = append(v.Lists, listView{Name: m.Env.Lists[i].Name, Retrievals: l.Retrievals})
		}
	}
	return v, nil
}

// summary counts recipients per notification state, in the protocol's order.
func (v *messageView) summary() string {
	counts := map[string]int{}
	for _, r := range v.Recipients {
		counts[r.Notification]++
	}
	var parts []string
	for n := store.Unprocessed; n <= store.LastNotification; n++ {
		if c := counts[n.String()]; c > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", c, n))
		}
	}
	for _, l := range v.Lists {
		parts = append(parts, fmt.Sprintf("list %s read %d", l.Name, l.Retrievals))
	}
	return strings.Join(parts, ", ")
}

// parseSince takes a date, an RFC 3339 time, or an age such as 36h or 7d.
func parseSince(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if t, err := time.ParseInLocation("2006-01-02", s, time.Local); err == nil {
		return t, nil
	}
	if n, ok := strings.CutSuffix(s, "d"); ok {
		if days, err := strconv.Atoi(n); err == nil && days >= 0 {
			return now.AddDate(0, 0, -days), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("--since %q: give a date (2006-01-02), a time (RFC 3339) or an age (36h, 7d)", s)
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

type printer struct {
	w    io.Writer
	tw   *tabwriter.Writer // nil when piped: plain tab-separated lines
	json bool
}

func (p *printer) row(cols ...string) {
	if p.tw != nil {
		fmt.Fprintln(p.tw, strings.Join(cols, "\t"))
	} else {
		fmt.Fprintln(p.w, strings.Join(cols, "\t"))
	}
}

func (p *printer) flush() {
	if p.tw != nil {
		p.tw.Flush()
	}
}

func (p *printer) time(t *time.Time) string {
	if t == nil {
		return "-"
	}
	if p.tw != nil {
		return t.Local().Format("2006-01-02 15:04")
	}
	return t.Format(time.RFC3339)
}

func main() {
	fs := flag.NewFlagSet("im2000-status", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	pending := fs.Bool("pending", false, "")
	failed := fs.Bool("failed", false, "")
	since := fs.String("since", "", "")
	asJSON := fs.Bool("json", false, "")
	summary := fs.Bool("queue", false, "")
	cancel := fs.Bool("cancel", false, "")
	resend := fs.Bool("resend", false, "")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Println(usage)
			os.Exit(0)
		}
		fail.Usage("%v\n%s", err, usage)
	}
	if fs.NArg() > 1 {
		fail.Usage("at most one message id\n%s", usage)
	}
	verb := ""
	switch {
	case *cancel && *resend:
		fail.Usage("--cancel or --resend: one at a time\n%s", usage)
	case *cancel:
		verb = "cancel"
	case *resend:
		verb = "resend"
	}
	if verb != "" && (fs.NArg() != 1 || *summary || *pending || *failed || *since != "" || *asJSON) {
		fail.Usage("--%s takes one message id and no other option\n%s", verb, usage)
	}
	if *summary && fs.NArg() > 0 {
		fail.Usage("--queue summarises the archive: no message id\n%s", usage)
	}
	var begin time.Time
	if *since != "" {
		var err error
		if begin, err = parseSince(*since, time.Now()); err != nil {
			fail.Usage("%v", err)
		}
	}
	out := bufio.NewWriter(os.Stdout)
	p := &printer{w: out, json: *asJSON}
	if !*asJSON && isTerminal(os.Stdout) {
		p.tw = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	}
	var err error
	if verb != "" {
		c := conf.FromEnv()
		var l *conf.Local
		if l, err = c.Local(); err == nil {
			err = act(p, c, l.Account, verb, fs.Arg(0))
		}
	} else {
		err = run(p, fs.Arg(0), filter{*pending, *failed, begin}, *summary)
	}
	p.flush()
	out.Flush()
	fail.Exit(err)
}

type filter struct {
	pending, failed bool
	since           time.Time
}

func (f filter) keep(v *messageView) bool {
	return (!f.pending || v.pending) && (!f.failed || v.failed) && !v.Submitted.Before(f.since)
}

func run(p *printer, idText string, f filter, summary bool) error {
	c := conf.FromEnv()
	l, err := c.Local()
	if err != nil {
		return err
	}
	if isRemote, err := remote.Configured(c); err != nil {
		return err
	} else if isRemote {
		return runRemote(p, c, l.Account, idText, f, summary)
	}
	root, err := c.Store()
	if err != nil {
		return err
	}
	st, err := store.Open(root)
	if err != nil {
		return err
	}
	a, err := st.Account(l.Account)
	if err != nil {
		return err
	}
	if idText != "" {
		id, err := msgid.Parse(idText)
		if err != nil {
			return fail.Perm(fmt.Errorf("%q: %v", idText, err))
		}
		v, err := view(a, id)
		if errors.Is(err, store.ErrNoSuch) {
			return fail.Perm(fmt.Errorf("%s: no such message in the archive of %s", idText, l.Account))
		}
		if err != nil {
			return err
		}
		return p.recipients(v)
	}
	ids, err := a.Messages()
	if err != nil {
		return err
	}
	var views []*messageView
	for _, id := range ids {
		v, err := view(a, id)
		if errors.Is(err, store.ErrNoSuch) {
			continue // cancelled or expired while we looked
		}
		if err != nil {
			return err
		}
		if f.keep(v) {
			views = append(views, v)
		}
	}
	return p.list(views, summary)
}

func (p *printer) messages(views []*messageView) error {
	if p.json {
		if views == nil {
			views = []*messageView{}
		}
		return p.encode(views)
	}
	if p.tw != nil {
		p.row("ID", "SUBMITTED", "SUBJECT", "RCPTS", "STATUS", "EXPIRES")
	}
	for _, v := range views {
		subject := strings.Map(func(r rune) rune {
			if r < ' ' {
				return ' '
			}
			return r
		}, v.Subject)
		if p.tw != nil && len([]rune(subject)) > 40 {
			subject = string([]rune(subject)[:39]) + "…"
		}
		t := v.Submitted
		p.row(v.ID, p.time(&t), subject, strconv.Itoa(len(v.Recipients)), v.summary(), p.expiry(v.Expires, v.ExpiresAsked))
	}
	return nil
}

func (p *printer) recipients(v *messageView) error {
	if p.json {
		return p.encode(v)
	}
	if p.tw != nil {
		p.row("RECIPIENT", "NOTIFICATION", "READ", "PINNED", "ATTEMPTS", "LAST", "NEXT")
	}
	for _, r := range v.Recipients {
		pin := "unpinned"
		if r.Pinned {
			pin = "pinned"
		}
		attempts := "-"
		if r.Attempts != nil {
			attempts = strconv.FormatInt(*r.Attempts, 10)
		}
		p.row(r.Address, r.notification(), r.Read, pin, attempts, p.time(r.Last), p.time(r.Next))
	}
	for _, l := range v.Lists {
		p.row("list:"+l.Name, "-", fmt.Sprintf("retrieved %d", l.Retrievals), "-", "-", "-", "-")
	}
	p.row("expires", p.expiry(v.Expires, v.ExpiresAsked))
	return nil
}

func (p *printer) encode(x any) error {
	e := json.NewEncoder(p.w)
	e.SetIndent("", "  ")
	return e.Encode(x)
}
