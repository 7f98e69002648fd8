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
	Passwords     string   // file of "account:bcrypt-hash" lines
	CheckPassword []string // if set, this program decides instead (checkpassword interface)
	Failures      *Limiter
}

// FromConf reads the settings: the checkpassword file (a program and its
// arguments) if present, else the passwords file; authdelay and
// authmaxdelay (milliseconds) for the failure delays. stateDir keeps the
// failure counts.
func FromConf(d conf.Dir, stateDir string) (*Checker, error) {
	l := &Limiter{Dir: stateDir}
	c := &Checker{Passwords: d.Path("passwords"), Failures: l}
	prog, err := d.String("checkpassword", "")
	if err != nil {
		return nil, err
	}
	if prog != "" {
		c.CheckPassword = strings.Fields(prog)
	}
	base, err := d.Int("authdelay", int64(Base/time.Millisecond))
	if err != nil {
		return nil, err
	}
	max, err := d.Int("authmaxdelay", int64(Max/time.Millisecond))
	if err != nil {
		return nil, err
	}
	if base < 0 || max < base {
		return nil, fmt.Errorf("%s must be at least 0 and %s at least as much", d.Path("authdelay"), d.Path("authmaxdelay"))
	}
	l.Base = time.Duration(min(base, 3600_000)) * time.Millisecond
	l.Max = time.Duration(min(max, 3600_000)) * time.Millisecond
	return c, os.MkdirAll(stateDir, 0o700)
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
// clears only this account's failures from this address.
func (c *Checker) Check(remote netip.Addr, account, password string) (bool, error) {
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
	if ok {
		c.Failures.Succeed(remote, account)
		return true, nil
	}
	time.Sleep(c.Failures.Fail(remote, account))
	return false, nil
}

// checkFile checks password against account's hash. For an account that
// is not in the file, it checks against another account's hash, whose
// result it ignores: that costs exactly what a real check does whatever
// cost the file's hashes were made with, where a fixed dummy hash would
// cost what it was made with and tell by its speed that the account does
// not exist.
func (c *Checker) checkFile(account, password string) (bool, error) {
	b, err := os.ReadFile(c.Passwords)
	if err != nil {
		return false, err
	}
	hash, stand := "", ""
	found := false
	for _, line := range strings.Split(string(b), "\n") {
		name, h, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok {
			continue
		}
		if stand == "" {
			if _, err := bcrypt.Cost([]byte(h)); err == nil {
				stand = h
			}
		}
		if name == account && !found {
			hash, found = h, true
		}
	}
	if !found {
		hash = stand
		if hash == "" {
			hash = dummyHash
		}
	}
	match := bcrypt.CompareHashAndPassword([]byte(hash), []byte(password)) == nil
	return match && found, nil
}

// checkProgram runs a checkpassword program: account, password and a
// timestamp, each NUL-terminated, on descriptor 3; exit 0 accepts, 1 (or
// anything but 111) refuses, 111 is a temporary failure. Only names that
// passed Valid get here.
func (c *Checker) checkProgram(account, password string) (bool, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return false, err
	}
	cmd := exec.Command(c.CheckPassword[0], append(c.CheckPassword[1:], "true")...)
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
	case err == nil:
		return true, nil
	case errors.As(err, &ee) && ee.ExitCode() == 111:
		return false, fmt.Errorf("%s: temporary failure: %s", c.CheckPassword[0], strings.TrimSpace(stderr.String()))
	case errors.As(err, &ee):
		return false, nil
	}
	return false, err
}
