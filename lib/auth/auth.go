// Package auth checks account passwords for the servers that authenticate
// (MSOAP, RNAQP): against a file of bcrypt hashes, or with a
// checkpassword-compatible program. A failure is answered only after a
// delay that grows with the failures from the same address, and an unknown
// account costs and answers exactly as a wrong password does.
package auth

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"

	"im2000/lib/conf"
)

// dummyHash is checked for accounts that do not exist, so that they take
// as long as a wrong password. Its password is no secret; no account has it.
const dummyHash = "$2a$10$RNoyb.l/al0YYqiAap96G.iN70yVfqiDSShK85dhZJPoMkxIT2Yom"

// Checker checks passwords.
type Checker struct {
	Passwords     string   // file of "account:bcrypt-hash" lines
	CheckPassword []string // if set, this program decides instead (checkpassword interface)
	Failures      *Limiter
}

// FromConf reads the settings: the checkpassword file (a program and its
// arguments) if present, else the passwords file. stateDir keeps the
// failure counts.
func FromConf(d conf.Dir, stateDir string) (*Checker, error) {
	c := &Checker{Passwords: d.Path("passwords"), Failures: &Limiter{Dir: stateDir}}
	prog, err := d.String("checkpassword", "")
	if err != nil {
		return nil, err
	}
	if prog != "" {
		c.CheckPassword = strings.Fields(prog)
	}
	return c, os.MkdirAll(stateDir, 0o700)
}

// ErrUnavailable is a temporary failure to check (the file or the program
// could not be used): the client should try again later.
var ErrUnavailable = errors.New("password check unavailable")

// Check reports whether password is account's. On a wrong password it
// first waits the delay the remote address has earned.
func (c *Checker) Check(remote netip.Addr, account, password string) (bool, error) {
	var ok bool
	var err error
	if c.CheckPassword != nil {
		ok, err = c.checkProgram(account, password)
	} else {
		ok, err = c.checkFile(account, password)
	}
	if err != nil {
		return false, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	if ok {
		c.Failures.Forget(remote)
		return true, nil
	}
	time.Sleep(c.Failures.Fail(remote))
	return false, nil
}

func (c *Checker) checkFile(account, password string) (bool, error) {
	b, err := os.ReadFile(c.Passwords)
	if err != nil {
		return false, err
	}
	hash := dummyHash
	found := false
	for _, line := range strings.Split(string(b), "\n") {
		name, h, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && name == account && !found {
			hash, found = h, true
		}
	}
	match := bcrypt.CompareHashAndPassword([]byte(hash), []byte(password)) == nil
	return match && found, nil
}

// checkProgram runs a checkpassword program: account, password and a
// timestamp, each NUL-terminated, on descriptor 3; exit 0 accepts, 1 (or
// anything but 111) refuses, 111 is a temporary failure.
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

// Limiter counts recent failures per remote address in files, one per
// address, so that the count holds across processes (tcpserver starts one
// per connection). The files are advisory: losing one in a crash only
// forgets a delay.
type Limiter struct {
	Dir string
}

// Delays grow from Base, doubling per failure within Window, up to Max.
const (
	Base   = 250 * time.Millisecond
	Max    = 8 * time.Second
	Window = 10 * time.Minute
)

func (l *Limiter) path(a netip.Addr) string {
	return filepath.Join(l.Dir, strings.ReplaceAll(a.Unmap().String(), ":", "_"))
}

// Fail records a failure from a and returns how long to wait before
// answering it.
func (l *Limiter) Fail(a netip.Addr) time.Duration {
	n := 0
	now := time.Now()
	if b, err := os.ReadFile(l.path(a)); err == nil {
		f := strings.Fields(string(b))
		if len(f) == 2 {
			count, _ := strconv.Atoi(f[0])
			last, _ := strconv.ParseInt(f[1], 10, 64)
			if now.Sub(time.Unix(last, 0)) < Window {
				n = count
			}
		}
	}
	n++
	tmp := l.path(a) + ".tmp" + strconv.Itoa(os.Getpid())
	if os.WriteFile(tmp, []byte(fmt.Sprintf("%d %d\n", n, now.Unix())), 0o600) == nil {
		os.Rename(tmp, l.path(a))
	}
	d := Base
	for i := 1; i < n && d < Max; i++ {
		d *= 2
	}
	return min(d, Max)
}

// Forget clears a's failures after a success.
func (l *Limiter) Forget(a netip.Addr) { os.Remove(l.path(a)) }
