// Package policy is a reader's sender policy: which verified senders'
// messages are fetched as they come, which are held until the user accepts
// them, and which are dropped without their stores ever being contacted
// (a spammer's per-recipient identifier must not become a read receipt).
//
// The file (senderpolicy) has one rule a line:
//
//	# comment
//	allow alice@example.org    fetch this sender's mail
//	allow @example.org         ... everyone at this domain
//	deny @spam.example         drop, never contact the store
//	deny @.spam.example        ... every subdomain of spam.example
//	default hold               everyone else: hold (or: default fetch)
//
// The most specific rule wins: an address over a domain, a domain over a
// subdomain pattern, a longer pattern over a shorter; at equal specificity
// deny wins over allow. Without a default line the default is fetch, so a
// missing file changes nothing. Addresses are parsed by lib/addr; domains
// and local parts are compared without regard to case, so that a deny
// cannot be dodged by capitals.
package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"syscall"

	"im2000/lib/addr"
)

// Verdict is what becomes of one sender's notification.
type Verdict int

const (
	Fetch Verdict = iota // retrieve as usual
	Hold                 // keep unretrieved until the user accepts it
	Deny                 // drop, unretrieved
)

func (v Verdict) String() string {
	switch v {
	case Hold:
		return "hold"
	case Deny:
		return "deny"
	}
	return "fetch"
}

// MaxSize bounds the file read: it may be a user's file read by a shared
// daemon (im2000-pop3d).
const MaxSize = 1 << 20

// rule is one allow or deny line.
type rule struct {
	deny bool
	line int
}

// Policy is a parsed file.
type Policy struct {
	Name        string  // the file's name, for messages
	Default     Verdict // Fetch or Hold
	DefaultLine int     // its line, 0 when not given
	addrs       map[string]rule
	domains     map[string]rule // "example.org"
	subdomains  map[string]rule // "spam.example" from "@.spam.example"
}

// Match is a verdict and the line that decided it (0: the built-in default).
type Match struct {
	Verdict Verdict
	Line    int
}

// Parse reads a policy; name is used in error messages, which have the
// form "name:line: what is wrong".
func Parse(name string, r io.Reader) (*Policy, error) {
	b, err := io.ReadAll(io.LimitReader(r, MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if len(b) > MaxSize {
		return nil, fmt.Errorf("%s: over %d octets", name, MaxSize)
	}
	p := &Policy{Name: name, addrs: map[string]rule{}, domains: map[string]rule{}, subdomains: map[string]rule{}}
	for i, line := range strings.Split(string(b), "\n") {
		if err := p.parseLine(i+1, strings.Trim(line, blanks+"\r")); err != nil {
			return nil, fmt.Errorf("%s:%d: %v", name, i+1, err)
		}
	}
	return p, nil
}

// blanks separate and surround the words of a line: ASCII space and tab
// only. lib/addr takes other Unicode spaces (NBSP) as atext, so trimming
// them would make "allow \u00a0ceo@x" allow ceo@x.
const blanks = " \t"

func (p *Policy) parseLine(n int, line string) error {
	if line == "" || line[0] == '#' {
		return nil
	}
	verb, arg := line, ""
	if i := strings.IndexAny(line, blanks); i >= 0 {
		verb, arg = line[:i], strings.Trim(line[i+1:], blanks)
	}
	switch verb {
	case "default":
		if p.DefaultLine != 0 {
			return fmt.Errorf("a second default line (the first is line %d)", p.DefaultLine)
		}
		switch arg {
		case "fetch":
			p.Default = Fetch
		case "hold":
			p.Default = Hold
		default:
			return fmt.Errorf("want \"default fetch\" or \"default hold\", found %q", line)
		}
		p.DefaultLine = n
		return nil
	case "allow", "deny":
		if arg == "" {
			return fmt.Errorf("%s what? want an address (alice@example.org) or a domain (@example.org, @.example.org)", verb)
		}
		key, m, err := target(arg)
		if err != nil {
			return err
		}
		r := rule{deny: verb == "deny", line: n}
		if old, ok := m(p)[key]; !ok || (r.deny && !old.deny) {
			m(p)[key] = r // deny over allow, whichever line comes first
		}
		return nil
	}
	return fmt.Errorf("want allow, deny or default, found %q", line)
}

// target parses a rule's argument into its table's key.
func target(arg string) (string, func(*Policy) map[string]rule, error) {
	if d, ok := strings.CutPrefix(arg, "@"); ok {
		table := func(p *Policy) map[string]rule { return p.domains }
		if sub, ok := strings.CutPrefix(d, "."); ok {
			d, table = sub, func(p *Policy) map[string]rule { return p.subdomains }
		}
		// lib/addr's domain rules, through a placeholder local part.
		m, err := addr.Parse("x@" + d)
		if err != nil || strings.ContainsAny(d, "@") {
			return "", nil, fmt.Errorf("%q is not a domain (want @example.org or @.example.org)", arg)
		}
		return m.Domain, table, nil
	}
	m, err := addr.Parse(arg)
	if err != nil {
		return "", nil, fmt.Errorf("%q is not an address: %v", arg, err)
	}
	return addrKey(m), func(p *Policy) map[string]rule { return p.addrs }, nil
}

// addrKey folds a mailbox for comparison: local parts without regard to
// case too (agents match recipients that way, and a deny must not be
// dodged by capitals).
func addrKey(m addr.Mailbox) string { return strings.ToLower(m.Local) + "@" + m.Domain }

// Decide returns the verdict for a verified sender.
func (p *Policy) Decide(sender addr.Mailbox) Match {
	if r, ok := p.addrs[addrKey(sender)]; ok {
		return r.match()
	}
	d := strings.ToLower(sender.Domain)
	if r, ok := p.domains[d]; ok {
		return r.match()
	}
	// Subdomain patterns: the longest parent domain first.
	for i := strings.IndexByte(d, '.'); i >= 0; i = strings.IndexByte(d, '.') {
		d = d[i+1:]
		if r, ok := p.subdomains[d]; ok {
			return r.match()
		}
	}
	return Match{Verdict: p.Default, Line: p.DefaultLine}
}

func (r rule) match() Match {
	if r.deny {
		return Match{Verdict: Deny, Line: r.line}
	}
	return Match{Verdict: Fetch, Line: r.line}
}

// Load reads the policy file at path. Only a name that does not exist
// (per Lstat) is the empty policy (everyone fetched); anything else that
// cannot be read, a dangling symbolic link included, is an error: the
// reader fails closed rather than fetch what the user meant to hold.
func Load(path string) (*Policy, error) {
	if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
		return Parse(path, bytes.NewReader(nil))
	}
	b, err := readBounded(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, bytes.NewReader(b))
}

// readBounded reads at most MaxSize+1 octets of the file: a file that is
// not a regular one (a FIFO, a device) is refused rather than waited on.
func readBounded(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	return io.ReadAll(io.LimitReader(f, MaxSize+1))
}
