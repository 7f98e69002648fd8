// Command im2000-inject puts a message into the sender's own archive, the
// way sendmail puts one into a queue. See man/im2000-inject.1.
package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"im2000/lib/addr"
	"im2000/lib/conf"
	"im2000/lib/fail"
	"im2000/lib/mailmsg"
	"im2000/lib/msgid"
	"im2000/lib/remote"
	"im2000/lib/store"
)

const usage = `usage: im2000-inject [-t] [-i] [-f sender] [-F fullname] [-l list]... [--] [recipient ...]
  -t          also send to the addresses in To, Cc and Bcc (Bcc is removed)
  -i, -oi     a line with a single dot does not end the message
  -f sender   From address when the message has none (also -r)
  -F name     full name for a From field the message lacks
  -l list     post to the list (repeatable)
  -h          show this help
sendmail options that mean nothing here (-oX, -B, -N, -R, -v, -bm) are accepted and ignored.`

type options struct {
	extract   bool
	ignoreDot bool
	from      string
	fullName  string
	lists     []string
	rcpts     []string
}

// parseArgs reads sendmail's flags, which allow a value both joined
// (-fbob@x) and separate (-f bob@x).
func parseArgs(args []string) (*options, error) {
	o := &options{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			o.rcpts = append(o.rcpts, args[i+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			o.rcpts = append(o.rcpts, a)
			continue
		}
		flag, val := a[1], a[2:]
		value := func() (string, error) {
			if val != "" {
				return val, nil
			}
			if i+1 == len(args) {
				return "", fmt.Errorf("option -%c needs a value", flag)
			}
			i++
			return args[i], nil
		}
		var err error
		switch flag {
		case 't':
			o.extract = true
		case 'i':
			o.ignoreDot = true
		case 'o':
			if val == "i" {
				o.ignoreDot = true
			} else if val == "" {
				_, err = value() // -o with its option separate
			}
		case 'f', 'r':
			o.from, err = value()
		case 'F':
			o.fullName, err = value()
		case 'l':
			var l string
			l, err = value()
			o.lists = append(o.lists, strings.ToLower(l))
		case 'B', 'N', 'R', 'V', 'X', 'L':
			_, err = value()
		case 'v', 'U', 'G', 'n', 'm', 'e':
		case 'b':
			if val != "m" {
				err = fmt.Errorf("mode -b%s is not supported: im2000-inject only submits messages", val)
			}
		case 'h':
			fmt.Println(usage)
			os.Exit(0)
		default:
			err = fmt.Errorf("unknown option %s", a)
		}
		if err != nil {
			return nil, err
		}
	}
	return o, nil
}

// errNotPermitted is a post to a list the account may not post to.
var errNotPermitted = errors.New("not permitted")

// classify gives store and message errors their exit codes.
func classify(err error) error {
	var marked *fail.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &marked):
		return err // already said: the remote store's answers
	case errors.Is(err, store.ErrTooLarge), errors.Is(err, store.ErrNoRecipients),
		errors.Is(err, mailmsg.ErrHeaderTooLarge), errors.Is(err, mailmsg.ErrBadHeader),
		errors.Is(err, mailmsg.ErrBadAddress), errors.Is(err, store.ErrBadAccount),
		errors.Is(err, store.ErrBadListName), errors.Is(err, errNotPermitted):
		return fail.Perm(err)
	}
	return fail.Temp(err)
}

func main() {
	o, err := parseArgs(os.Args[1:])
	if err != nil {
		fail.Usage("%v\n%s", err, usage)
	}
	id, err := inject(o, os.Stdin)
	if err != nil {
		if errors.Is(err, store.ErrQuota) {
			err = fmt.Errorf("%w: remove or cancel old messages, or raise the quota", err)
		}
		fail.Exit(classify(err))
	}
	fmt.Println(id)
}

func inject(o *options, stdin io.Reader) (string, error) {
	s, err := conf.FromEnv().Local()
	if err != nil {
		return "", err
	}
	sender, err := addr.Parse(s.Account + "@" + s.Me)
	if err != nil {
		return "", fmt.Errorf("account %q at %q is not a valid address: %w", s.Account, s.Me, store.ErrBadAccount)
	}
	from := sender
	if o.from != "" {
		if from, err = mailmsg.ParseAddress(o.from, s.Me); err != nil {
			return "", err
		}
	}
	in := stdin
	if !o.ignoreDot {
		in = mailmsg.NewDotReader(in)
	}
	msg, err := mailmsg.Read(bufio.NewReaderSize(in, 64<<10))
	if err != nil {
		return "", err
	}
	var rcpts []addr.Mailbox
	for _, r := range o.rcpts {
		mb, err := mailmsg.ParseAddress(r, s.Me)
		if err != nil {
			return "", err
		}
		rcpts = append(rcpts, mb)
	}
	if o.extract {
		more, err := msg.Recipients()
		if err != nil {
			return "", err
		}
		rcpts = append(rcpts, more...)
	}
	rcpts = dedupe(rcpts)
	if len(rcpts) == 0 && len(o.lists) == 0 {
		return "", fmt.Errorf("%w: name them as arguments, use -t, or post to a list with -l", store.ErrNoRecipients)
	}

	c := conf.FromEnv()
	for _, l := range o.lists {
		if err := store.CheckListName(l); err != nil {
			return "", err
		}
	}
	isRemote, err := remote.Configured(c)
	if err != nil {
		return "", err
	}
	if isRemote {
		return injectRemote(c, s, msg, from, o, rcpts) // the remote store decides who may post
	}
	for _, l := range o.lists {
		ok, err := c.MayPost(l, s.Account)
		if err != nil {
			return "", err
		}
		if !ok {
			return "", fmt.Errorf("%w: %s may not post to list %s (see %s)", errNotPermitted, s.Account, l, c.Path("lists/"+l))
		}
	}
	root, err := c.Store()
	if err != nil {
		return "", err
	}
	st, err := store.Open(root)
	if err != nil {
		return "", err
	}
	acct, err := st.Account(s.Account)
	if err != nil {
		return "", err
	}
	lim := store.Limits{MaxMessage: s.MaxMessage, Quota: s.Quota}
	d, err := acct.NewDraft(store.Submission{Sender: sender, Lifetime: s.Lifetime, Recipients: rcpts, Lists: o.lists}, lim)
	if err != nil {
		return "", err
	}
	env := d.Envelope()
	msg.Complete(mailmsg.Defaults{From: from, FullName: o.fullName, Date: env.Submitted, MessageID: env.ID.String() + "@" + s.Me})
	if _, err := msg.WriteTo(d); err != nil {
		d.Abort()
		if errors.Is(err, store.ErrTooLarge) {
			err = fmt.Errorf("%w (%d bytes; see %s)", err, s.MaxMessage, c.Path("databytes"))
		}
		return "", err
	}
	if _, err := d.Commit(); err != nil {
		return "", err
	}
	return env.ID.String(), nil
}

// injectRemote submits over MSOAP to the store the configuration names,
// and records the submission in the sent log for im2000-status.
func injectRemote(c conf.Dir, s *conf.Local, msg *mailmsg.Message, from addr.Mailbox, o *options, rcpts []addr.Mailbox) (string, error) {
	now := time.Now()
	msg.Complete(mailmsg.Defaults{From: from, FullName: o.fullName, Date: now, MessageID: msgid.New().String() + "@" + s.Me})
	var buf bytes.Buffer
	if _, err := msg.WriteTo(&limitWriter{w: &buf, left: s.MaxMessage}); err != nil {
		if errors.Is(err, store.ErrTooLarge) {
			err = fmt.Errorf("%w (%d bytes; see %s)", err, s.MaxMessage, c.Path("databytes"))
		}
		return "", err
	}
	rs, err := remote.Dial(c, s.Account)
	if err != nil {
		return "", err
	}
	defer rs.Close()
	id, err := rs.Submit(rcpts, o.lists, s.Lifetime, buf.Bytes())
	if err != nil {
		return "", err
	}
	subject, _ := msg.Header.Subject()
	if log, err := remote.SentLog(c); err == nil {
		err = remote.Record(log, remote.Sent{ID: id, Submitted: now, Subject: subject})
		if err != nil {
			// The message is committed at the store: only the local listing suffers.
			fail.Warn("warning: %s is submitted, but not recorded in %s: %v", id, log, err)
		}
	}
	return id.String(), nil
}

// limitWriter fails with store.ErrTooLarge past its limit (0: none).
type limitWriter struct {
	w    io.Writer
	left int64
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if l.left > 0 && int64(len(p)) > l.left {
		return 0, store.ErrTooLarge
	}
	if l.left > 0 {
		l.left -= int64(len(p))
	}
	return l.w.Write(p)
}

func dedupe(in []addr.Mailbox) []addr.Mailbox {
	seen := map[addr.Mailbox]bool{}
	var out []addr.Mailbox
	for _, a := range in {
		if !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	return out
}
