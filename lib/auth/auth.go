// Package auth checks account passwords for the servers that authenticate
// (MSOAP, RNAQP, SMTP AUTH): against a file of bcrypt hashes, or with a
// checkpassword-compatible program. It leaks nothing an attacker could
// use: a name that is no valid account name is refused before any check
// (no program ever sees it); an unknown account costs exactly what a
// wrong password does; every failure is answered only after a delay that
// grows with the failures from the address (Limiter), and the answers to
// one address's failures are spaced by that delay whether they come one
// after another or in parallel.
package auth

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"

	"im2000/lib/conf"
	"im2000/lib/store"
)

// dummyHash is checked for an account that does not exist when the
// passwords file holds no hash at all to check against instead. Its
// password is no secret; no account has it.
const dummyHash = "$2a$10$RNoyb.l/al0YYqiAap96G.iN70yVfqiDSShK85dhZJPoMkxIT2Yom"

// MaxPassword is the longest password checked; bcrypt looks at 72 octets,
// a checkpassword program at what it is given.
const MaxPassword = 1024

// Checker checks passwords.
type Checker struct {
	Passwords     string        // file of "account:bcrypt-hash" lines
	CheckPassword []string      // if set, this program decides instead (checkpassword interface)
	Timeout       time.Duration // the program is killed after this long (a temporary failure); 0: 60 s
	Failures      *Limiter
	// Serves, if set, says whether the server serves the account at all
	// (queryd: whether it has a spool). An account it does not serve
	// fails exactly as a wrong password does, right password or not: an
	// instant "no" for the right one would tell it from a wrong one.
	Serves func(account string) bool
	// Frontends are the addresses (the setting authfrontends) whose
	// attempts are not delayed nor counted: front ends (pop3d, smtpd) that
	// check their clients' passwords here and delay each client at their
	// own end, keyed by the client's address. Counted here, all their
	// clients would share one address's delays, and one attacker would
	// lock everybody out.
	Frontends []netip.Prefix
}

// FromConf reads the settings: the checkpassword file (a program and its
// arguments) if present, else the passwords file; authdelay and
// authmaxdelay (milliseconds) for the failure delays. stateDir keeps the
// failure counts.
func FromConf(d conf.Dir, stateDir string) (*Checker, error) {
	l, err := LimiterFromConf(d, stateDir)
	if err != nil {
		return nil, err
	}
	c := &Checker{Passwords: d.Path("passwords"), Failures: l}
	prog, err := d.Str("checkpassword")
	if err != nil {
		return nil, err
	}
	if prog != "" {
		c.CheckPassword = strings.Fields(prog)
	}
	secs, err := d.Num("authtimeout")
	if err != nil {
		return nil, err
	}
	if secs > 0 {
		c.Timeout = time.Duration(min(secs, 3600)) * time.Second
	}
	fe, err := d.Str("authfrontends")
	if err != nil {
		return nil, err
	}
	if c.Frontends, err = ParseFrontends(fe); err != nil {
		return nil, fmt.Errorf("%s: %v", d.Path("authfrontends"), err)
	}
	return c, nil
}

// LimiterFromConf reads authdelay and authmaxdelay (milliseconds) into a
// Limiter keeping its files in stateDir (made if missing).
func LimiterFromConf(d conf.Dir, stateDir string) (*Limiter, error) {
	l := &Limiter{Dir: stateDir}
	base, err := d.Num("authdelay")
	if err != nil {
		return nil, err
	}
	max, err := d.Num("authmaxdelay")
	if err != nil {
		return nil, err
	}
	if base < 0 || max < base {
		return nil, fmt.Errorf("%s must be at least 0 and %s at least as much", d.Path("authdelay"), d.Path("authmaxdelay"))
	}
	l.Base = time.Duration(min(base, 3600_000)) * time.Millisecond
	l.Max = time.Duration(min(max, 3600_000)) * time.Millisecond
	return l, os.MkdirAll(stateDir, 0o700)
}

// ParseFrontends reads the setting authfrontends: addresses or prefixes
// (192.0.2.7, 2001:db8::/64), separated by blanks or lines.
func ParseFrontends(s string) ([]netip.Prefix, error) {
	var ps []netip.Prefix
	for _, f := range strings.Fields(s) {
		if len(ps) >= 1000 {
			return nil, errors.New("more than 1000 front ends")
		}
		if a, err := netip.ParseAddr(f); err == nil && a.Zone() == "" {
			ps = append(ps, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, fmt.Errorf("%q is neither an address nor a prefix", f)
		}
		ps = append(ps, p.Masked())
	}
	return ps, nil
}

// frontend says whether a is one of c.Frontends.
func (c *Checker) frontend(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range c.Frontends {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ErrUnavailable is a temporary failure to check (the file or the program
// could not be used): the client should try again later.
var ErrUnavailable = errors.New("password check unavailable")

// ErrBadName says why a name was refused before any check.
var ErrBadName = errors.New("not a valid account name")

// Valid is the check made before any other: account must be a valid
// account name (store.CheckAccount, the one rule for names) and the
// password short and without NUL (the checkpassword interface ends each
// field with one, so a NUL would let the caller choose what the program
// reads).
func Valid(account, password string) error {
	if err := store.CheckAccount(account); err != nil {
		return fmt.Errorf("%w: %v", ErrBadName, err)
	}
	if len(password) > MaxPassword || strings.IndexByte(password, 0) >= 0 {
		return fmt.Errorf("%w: the password is longer than %d octets or has a NUL", ErrBadName, MaxPassword)
	}
	return nil
}

// Check reports whether password is account's. On a failure it first
// waits the delay the remote address has earned (Limiter.Fail); a success
// clears only this account's failures from this address. An attempt from
// an address whose answers are already due further ahead than the longest
// delay is refused unchecked with ErrThrottled (Limiter.Ready). A front
// end's attempts (Frontends) are neither delayed nor counted.
func (c *Checker) Check(remote netip.Addr, account, password string) (bool, error) {
	lim := c.Failures
	if lim != nil && c.frontend(remote) {
		lim = nil
	}
	var due time.Time
	if lim != nil {
		var err error
		if due, err = lim.Ready(remote); err != nil {
			return false, err
		}
	}
	var ok bool
	var err error
	switch {
	case Valid(account, password) != nil:
		// Refused unchecked, and counted as a failure of the address: a
		// fast answer here would be a free guess at nothing, but a cheap
		// way to probe the delays.
		ok, account = false, ""
	case c.CheckPassword != nil:
		ok, err = c.checkProgram(account, password)
	default:
		ok, err = c.checkFile(account, password)
	}
	if err != nil {
		return false, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	if ok && c.Serves != nil && !c.Serves(account) {
		ok = false // decided after the same check: costs what a wrong password does
	}
	if lim == nil {
		return ok, nil
	}
	if ok {
		lim.Succeed(remote, account)
		return true, nil
	}
	time.Sleep(lim.FailAt(remote, account, due))
	return false, nil
}

// checkFile checks password against account's hash. For an account that
// is not in the file, or whose hash is none (a disabled account, "bob:!"),
// it checks against a stand-in, whose result it ignores: the costliest
// hash of the file, found as the file is read. So a missing or disabled
// account costs at least what the dearest real check does whatever costs
// the file's hashes were made with (the first hash would do for a file of
// one cost, but a cheap old hash first would tell by its speed that the
// account does not exist); a fixed dummy hash only when the file has none.
func (c *Checker) checkFile(account, password string) (bool, error) {
	b, err := os.ReadFile(c.Passwords)
	if err != nil {
		return false, err
	}
	hash, stand, standCost := "", dummyHash, -1
	found := false
	for _, line := range strings.Split(string(b), "\n") {
		name, h, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok {
			continue
		}
		if cost, err := bcrypt.Cost([]byte(h)); err == nil && cost > standCost {
			stand, standCost = h, cost
		}
		if name == account && !found {
			hash, found = h, true
		}
	}
	if _, err := bcrypt.Cost([]byte(hash)); !found || err != nil {
		compareHash([]byte(stand), []byte(password))
		return false, nil
	}
	return compareHash([]byte(hash), []byte(password)) == nil, nil
}

// compareHash is bcrypt's check; the tests watch which hash it is given,
// since what a check costs is the cost of that hash.
var compareHash = bcrypt.CompareHashAndPassword

// checkProgram runs a checkpassword program: account, password and a
// timestamp, each NUL-terminated, on descriptor 3; exit 0 accepts, 1 (or
// anything but 111) refuses, 111 is a temporary failure. Only names that
// passed Valid get here.
//
// The program has c.Timeout (authtimeout) to answer; then it is killed and
// the check is a temporary failure: a program that hangs must not hold a
// session (and its slot) for ever.
func (c *Checker) checkProgram(account, password string) (bool, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return false, err
	}
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = 60 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.CheckPassword[0], append(c.CheckPassword[1:], "true")...)
	cmd.WaitDelay = time.Second // its children may hold stderr open
	cmd.ExtraFiles = []*os.File{r}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		return false, err
	}
	r.Close()
	fmt.Fprintf(w, "%s\x00%s\x00%d\x00", account, password, time.Now().Unix())
	w.Close()
	err = cmd.Wait()
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		return false, fmt.Errorf("%s: no answer within %v, killed", c.CheckPassword[0], timeout)
	case err == nil:
		return true, nil
	case errors.As(err, &ee) && ee.ExitCode() == 111:
		return false, fmt.Errorf("%s: temporary failure: %s", c.CheckPassword[0], strings.TrimSpace(stderr.String()))
	case errors.As(err, &ee):
		return false, nil
	}
	return false, err
}
