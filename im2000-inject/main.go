// Command im2000-inject puts a message into the sender's own archive, the
// way sendmail puts one into a queue. See man/im2000-inject.1.
package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"im2000/lib/addr"
	"im2000/lib/conf"
	"im2000/lib/fail"
	"im2000/lib/mailmsg"
	"im2000/lib/remote"
	"im2000/lib/store"
	"im2000/lib/submit"
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
		errors.Is(err, store.ErrBadListName), errors.Is(err, submit.ErrNotPermitted),
		errors.Is(err, submit.ErrSender):
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
	err = permissionHint(conf.FromEnv(), err) // account.go
	if err != nil {
		if errors.Is(err, store.ErrQuota) {
			err = fmt.Errorf("%w: remove or cancel old messages, or raise the quota", err)
		}
		fail.Exit(classify(err))
	}
	fmt.Println(id)
}

func inject(o *options, stdin io.Reader) (string, error) {
	d := conf.FromEnv()
	if err := d.Check(); err != nil {
		return "", fail.Perm(err)
	}
	s, err := d.Local()
	if err != nil {
		return "", err
	}
	if err := checkSender(d, s); err != nil { // account.go
		return "", err
	}
	if isRemote, err := remote.Configured(d); err != nil {
		return "", err
	} else if !isRemote {
		if err := checkAccount(d, s.Account); err != nil {
			return "", err
		}
	}
	from, err := addr.Parse(s.Account + "@" + s.Me)
	if err != nil {
		return "", fmt.Errorf("account %q at %q is not a valid address: %w", s.Account, s.Me, store.ErrBadAccount)
	}
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
	id, err := submit.Submit(&submit.Request{Conf: conf.FromEnv(), Settings: s, Recipients: rcpts, Lists: o.lists,
		Msg: msg, From: from, FullName: o.fullName})
	if err != nil {
		return "", err
	}
	return id.String(), nil
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
