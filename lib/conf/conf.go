// Package conf reads qmail-style configuration: one small file per setting
// in a directory, readable with cat and changeable with echo. The directory
// is $IM2000_CONF, or /etc/im2000 when that is unset. A missing file means
// the setting's default; a file that exists but cannot be read or parsed is
// an error, never silently a default.
package conf

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// DefaultDir is used when $IM2000_CONF is not set.
const DefaultDir = "/etc/im2000"

// Dir is a configuration directory.
type Dir string

// FromEnv returns $IM2000_CONF or DefaultDir.
func FromEnv() Dir {
	if d := os.Getenv("IM2000_CONF"); d != "" {
		return Dir(d)
	}
	return DefaultDir
}

// Path names a setting's file.
func (d Dir) Path(name string) string { return filepath.Join(string(d), name) }

// String returns the first line of the setting, trimmed, or def when the
// file does not exist or is empty.
func (d Dir) String(name, def string) (string, error) {
	b, err := os.ReadFile(d.Path(name))
	if errors.Is(err, fs.ErrNotExist) {
		return def, nil
	}
	if err != nil {
		return "", err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	line = strings.TrimSpace(line)
	if line == "" {
		return def, nil
	}
	return line, nil
}

// Int returns the setting as a non-negative integer, or def.
func (d Dir) Int(name string, def int64) (int64, error) {
	s, err := d.String(name, "")
	if err != nil || s == "" {
		return def, err
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%s: want a whole number of 0 or more, found %q", d.Path(name), s)
	}
	return n, nil
}

// Lines returns the non-empty lines of the setting that do not start with
// '#', each trimmed; nil when the file does not exist.
func (d Dir) Lines(name string) ([]string, error) {
	b, err := os.ReadFile(d.Path(name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		if l != "" && l[0] != '#' {
			out = append(out, l)
		}
	}
	return out, nil
}

// Local is what a command run by an originator needs about its archive;
// where a local store is, Store says.
type Local struct {
	Account    string        // $IM2000_ACCOUNT, else the login name
	Me         string        // me: this host's mail domain, default the hostname
	MaxMessage int64         // databytes: bytes per message, default 16 MiB
	Quota      int64         // quota: bytes per account, 0 for none
	Lifetime   time.Duration // lifetime: seconds a message is kept, default 30 days
}

// Store returns the store's directory: $IM2000_STORE, else the store file.
func (d Dir) Store() (string, error) {
	if s := os.Getenv("IM2000_STORE"); s != "" {
		return s, nil
	}
	s, err := d.Str("store")
	if err == nil && s == "" {
		err = fmt.Errorf("no store configured: set IM2000_STORE, or write its path to %s", d.Path("store"))
	}
	return s, err
}

// Agent returns the notification agent's spool directory: $IM2000_AGENT,
// else the agent file.
func (d Dir) Agent() (string, error) {
	if s := os.Getenv("IM2000_AGENT"); s != "" {
		return s, nil
	}
	s, err := d.Str("agent")
	if err == nil && s == "" {
		err = fmt.Errorf("no agent spool configured: set IM2000_AGENT, or write its path to %s", d.Path("agent"))
	}
	return s, err
}

// MayPost reports whether account may post to the list hosted here:
// lists/NAME names the accounts that may, one per line, or "*" for every
// authenticated account. A list without a file is not hosted here.
func (d Dir) MayPost(list, account string) (bool, error) {
	if list == "" || list[0] == '.' || strings.ContainsRune(list, '/') {
		return false, nil // never a path outside lists/
	}
	lines, err := d.Lines(filepath.Join("lists", list))
	if err != nil {
		return false, err
	}
	for _, l := range lines {
		if l == "*" || l == account {
			return true, nil
		}
	}
	return false, nil
}

// Me is this host's mail domain: the setting me, or the host name.
func (d Dir) Me() (string, error) {
	host, _ := os.Hostname()
	return d.String("me", host)
}

// Local reads the settings of the invoking user's archive.
func (d Dir) Local() (*Local, error) {
	l := &Local{}
	var err error
	if l.Account = os.Getenv("IM2000_ACCOUNT"); l.Account == "" {
		u, err := user.Current()
		if err != nil {
			return nil, fmt.Errorf("cannot tell who you are (set IM2000_ACCOUNT): %v", err)
		}
		l.Account = u.Username
	}
	if l.Me, err = d.Me(); err != nil {
		return nil, err
	}
	if l.MaxMessage, err = d.Num("databytes"); err != nil {
		return nil, err
	}
	if l.Quota, err = d.Num("quota"); err != nil {
		return nil, err
	}
	secs, err := d.Num("lifetime")
	if err != nil {
		return nil, err
	}
	l.Lifetime = time.Duration(secs) * time.Second
	return l, nil
}
