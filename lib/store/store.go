// Package store is the message store on disk: one archive per originator
// account, each message written once and kept with its envelope, its
// delivery status and its index entries. The layout and the commit protocol
// are described in man/im2000-store.5; the reasons in DESIGN-NOTES.md.
//
//	<root>/.key                          32 random octets: recipient ids are made under it (key.go)
//	<root>/rcpt/<24 hex digits>          -> ../<account>/msg/<id>   (one per message: rid.go)
//	<root>/rcpt/<lid>                    -> ../<account>/msg/<id>   (list ids; recipient ids of old)
//	<root>/lists/<name>/<day>/<unix>.<lid> -> ../../../<account>/msg/<id>
//	<root>/<account>/tmp/                writes in progress
//	<root>/<account>/msg/<id>            envelope, blank line, message; immutable
//	<root>/<account>/status/<id>         the status sidecar, replaced atomically
//	<root>/<account>/todo/<id>           -> ../msg/<id>, committed, not yet seen by notifyd
//	<root>/<account>/queue/<id>          -> ../msg/<id>, in notifyd's schedule
//
// The rename of tmp/<id> to msg/<id> is the one commit point. Every other
// entry is made before it, so a crash leaves either a complete message or
// only entries that point at nothing; readers treat those as absent, and
// Clean removes them once they are stale.
package store

import (
	"crypto/cipher"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"im2000/lib/durable"
	"im2000/lib/msgid"
)

// Errors callers act on. ErrTooLarge and ErrNoRecipients are permanent,
// ErrQuota is temporary (old messages expire and free room).
var (
	ErrTooLarge     = errors.New("message larger than the store's size limit")
	ErrQuota        = errors.New("message would exceed the account's quota")
	ErrNoRecipients = errors.New("message has no recipients and no lists")
	ErrNoSuch       = errors.New("no such message")
	ErrBadAccount   = errors.New("bad account name")
	ErrBadListName  = errors.New("bad list name")
)

// StaleAge is how long a temporary file or an index entry without its
// message may stand before Clean takes it for the debris of a crash. It is
// far longer than any write in progress (every daemon's idle timeout is
// minutes), so Clean never races a live writer.
const StaleAge = time.Hour

// Store is a message store rooted at a directory.
type Store struct {
	Root string
	// Warnings are what Open found wrong with the store's permissions,
	// for the programs that serve it to log.
	Warnings []string
	block    cipher.Block // the store's key (rid.go)
}

// indexDirs are the store-wide index directories. Their entries are
// capabilities (a recipient identifier opens a message), so only the
// store's owner may list them: 0700.
var indexDirs = []string{"rcpt", "lists"}

// Open opens the store at root, which must exist (a mistyped path must not
// silently become a new store), and creates its shared index directories,
// 0700, and its key (key.go), 0600, if it never had one. An index
// directory or key that an older version made readable by others is
// tightened; a root readable by others is left as the admin made it, with
// a warning (the index and the archives below it are closed anyway).
func Open(root string) (*Store, error) {
	fi, err := os.Stat(root)
	if err != nil {
		return nil, fmt.Errorf("store %s: %w (create it with mkdir, or set IM2000_STORE)", root, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("store %s is not a directory", root)
	}
	s := &Store{Root: root}
	if fi.Mode().Perm()&0o077 != 0 {
		s.Warnings = append(s.Warnings, fmt.Sprintf("the store %s is open to other users (mode %04o): chmod 700 it",
			root, fi.Mode().Perm()))
	}
	for _, d := range indexDirs {
		path := filepath.Join(root, d)
		if _, err := durable.Mkdir(path, 0o700); err != nil {
			return nil, err
		}
		s.Warnings = append(s.Warnings, tighten(path)...)
	}
	if err := s.loadKey(); err != nil {
		return nil, err
	}
	return s, nil
}

// tighten makes an index directory 0700 if it is not, and says what it
// could not do.
func tighten(path string) []string {
	fi, err := os.Lstat(path)
	if err != nil || !fi.IsDir() {
		return []string{fmt.Sprintf("%s is not a directory", path)}
	}
	if fi.Mode().Perm()&0o077 == 0 {
		return nil
	}
	if err := os.Chmod(path, 0o700); err != nil {
		return []string{fmt.Sprintf("%s is open to other users (mode %04o) and cannot be closed: %v; chmod 700 it",
			path, fi.Mode().Perm(), err)}
	}
	return nil
}

// Account is one originator's archive.
type Account struct {
	s    *Store
	Name string
	dir  string
}

// CheckAccount accepts names that are safe as a directory name, and none
// that starts with a dot, such as the store's key (key.go).
func CheckAccount(name string) error {
	if name == "" || len(name) > 64 || name[0] == '.' || name == "rcpt" || name == "lists" {
		return fmt.Errorf("%w: %q", ErrBadAccount, name)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("%w: %q", ErrBadAccount, name)
		}
	}
	return nil
}

var accountDirs = []string{"tmp", "msg", "status", "todo", "queue"}

// Account opens an account's archive, creating it on first use.
func (s *Store) Account(name string) (*Account, error) {
	if err := CheckAccount(name); err != nil {
		return nil, err
	}
	a := &Account{s: s, Name: name, dir: filepath.Join(s.Root, name)}
	if _, err := durable.Mkdir(a.dir, 0o700); err != nil {
		return nil, err
	}
	for _, d := range accountDirs {
		if _, err := durable.Mkdir(filepath.Join(a.dir, d), 0o700); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// Accounts lists the archives in the store.
func (s *Store) Accounts() ([]string, error) {
	ents, err := os.ReadDir(s.Root)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() && CheckAccount(e.Name()) == nil {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

func (a *Account) path(dir string, id msgid.ID) string {
	return filepath.Join(a.dir, dir, id.String())
}

func (s *Store) rcptPath(id msgid.ID) string { return filepath.Join(s.Root, "rcpt", id.String()) }

// TriggerPath is the FIFO im2000-notifyd reads to learn of new messages at
// once, as qmail-send reads lock/trigger.
func (s *Store) TriggerPath() string { return filepath.Join(s.Root, "trigger") }

// Trigger wakes im2000-notifyd and tells it which account has a new
// message, so that it looks at that account's todo/ alone. It never blocks
// and never fails: with no notifyd listening, or the FIFO full, the message
// waits for notifyd's next scan of every todo/. A line of at most PIPE_BUF
// octets is written atomically, so lines from concurrent commits never mix.
func (s *Store) Trigger(account string) {
	fd, err := unix.Open(s.TriggerPath(), unix.O_WRONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	unix.Write(fd, []byte(account+"\n"))
	unix.Close(fd)
}
