package store

import (
	"bufio"
	"crypto/aes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"im2000/lib/durable"
	"im2000/lib/msgid"
)

// keySize is the length of the store's key: AES-256.
const keySize = 32

// keyName is the store's key, in its root: made once, never changed, since
// every recipient id handed out depends on it. It starts with a dot, as no
// account name does (CheckAccount), so no account of an older store stands
// in its way. Its makers' temporary files are keyTmpPrefix<pid>-<random>:
// never the key's own name, which has no hyphen.
const (
	keyName      = ".key"
	keyTmpPrefix = ".key-"
)

func (s *Store) keyFile() string { return filepath.Join(s.Root, keyName) }

// restoreKey is what an admin must do when the key is missing or wrong.
const restoreKey = "restore it from the store's backup: under another key no recipient id handed out opens " +
	"its message, and their status cannot be updated (im2000-store(5), IDENTIFIERS)"

// loadKey reads the store's key, making it first if the store has none
// and never needed one. A key missing from a store whose messages have
// derived ids was lost (a restore without it, a mistaken rm): a new one
// would silently void every id handed out and leave those messages stuck
// until they expire, so Open refuses until the admin restores it. For the
// same reason a key of the wrong size, or not the one a message's ids were
// made under, is refused, never replaced.
func (s *Store) loadKey() error {
	key, err := s.readKey()
	if errors.Is(err, fs.ErrNotExist) {
		if err := s.noDerivedIDs(); err != nil {
			return err
		}
		if err := s.makeKey(); err != nil {
			return fmt.Errorf("store key %s: cannot make it: %w", s.keyFile(), err)
		}
		key, err = s.readKey()
	}
	if err != nil {
		return err
	}
	if s.block, err = aes.NewCipher(key); err != nil {
		return err
	}
	return s.checkKey()
}

// readKey opens the key once and reads that descriptor: not following a
// symbolic link (the key is the store's own file, never a pointer to one
// elsewhere), not blocking on a FIFO, taking only a regular file of
// exactly keySize octets. A key others may read is closed, with a warning
// even then: it may have been copied, and a key cannot be rotated.
func (s *Store) readKey() ([]byte, error) {
	path := s.keyFile()
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err == unix.ELOOP {
		return nil, fmt.Errorf("store key %s is a symbolic link: replace it with the key itself, mode 0600", path)
	}
	if err != nil {
		return nil, fmt.Errorf("store key: %w", &fs.PathError{Op: "open", Path: path, Err: err})
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("store key %s: %w", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Size != keySize {
		return nil, fmt.Errorf("store key %s is not a file of %d octets: %s", path, keySize, restoreKey)
	}
	if perm := st.Mode & 0o777; perm&0o077 != 0 {
		w := fmt.Sprintf("the store key %s was open to other users (mode %04o): ", path, perm)
		if err := unix.Fchmod(fd, 0o600); err != nil {
			w += fmt.Sprintf("it cannot be closed (%v), chmod 600 it; ", err)
		}
		s.Warnings = append(s.Warnings, w+"it may have been copied, and with it every recipient id can be "+
			"derived; it cannot be rotated (im2000-store(5), IDENTIFIERS)")
	}
	key := make([]byte, keySize)
	if _, err := io.ReadFull(fdReader(fd), key); err != nil {
		return nil, fmt.Errorf("store key %s: %w", path, err)
	}
	return key, nil
}

// fdReader reads a descriptor that readKey owns.
type fdReader int

func (fd fdReader) Read(b []byte) (int, error) {
	n, err := unix.Read(int(fd), b)
	if n == 0 && err == nil {
		return 0, io.EOF
	}
	if n < 0 {
		n = 0
	}
	return n, err
}

// noDerivedIDs says whether a store without a key may be given one: only
// if no message has derived ids, that is if rcpt/ holds no locator link
// (24 hex digits; recipient and list ids of old have 32). Read once, when
// the key is missing: that is, once in a store's life if all is well.
func (s *Store) noDerivedIDs() error {
	dir := filepath.Join(s.Root, "rcpt")
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	for {
		names, err := f.Readdirnames(1024)
		for _, n := range names {
			if isLocator(n) {
				return fmt.Errorf("store key %s is missing but %s/%s shows messages whose recipient ids were "+
					"made under it: %s", s.keyFile(), dir, n, restoreKey)
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("store key %s is missing and %s cannot be read to tell whether it may be made: %w",
				s.keyFile(), dir, err)
		}
	}
}

func isLocator(name string) bool {
	if len(name) != 2*locatorSize {
		return false
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// checkKey tries the key on one message: the first locator link among the
// first entries of rcpt/ (one getdents call), whose envelope must list its
// recipient 0 under the id the key derives. So a wrong key of the right
// size (another store's, an old backup's) stops Open instead of failing
// every retrieval and update. It reads one directory block and the head of
// one envelope; a store with no locator among them goes unchecked.
func (s *Store) checkKey() error {
	f, err := os.Open(filepath.Join(s.Root, "rcpt"))
	if err != nil {
		return err
	}
	names, _ := f.Readdirnames(64)
	f.Close()
	for _, n := range names {
		if !isLocator(n) {
			continue
		}
		id, rid, ok := s.firstRecipient(filepath.Join(s.Root, "rcpt", n))
		if !ok {
			continue // cancelled, half-committed, or not ours: try another
		}
		if s.recipientID(id, 0) != rid {
			return fmt.Errorf("store key %s is not the key message %s's recipient ids were made under: %s",
				s.keyFile(), id, restoreKey)
		}
		return nil
	}
	return nil
}

// firstRecipient reads the id and recipient 0's id from the head of the
// envelope a locator link leads to, without parsing the rest (it may list
// thousands of recipients).
func (s *Store) firstRecipient(link string) (id, rid msgid.ID, ok bool) {
	target, err := os.Readlink(link)
	parts := strings.Split(target, "/")
	if err != nil || len(parts) != 4 || parts[0] != ".." || parts[2] != "msg" || CheckAccount(parts[1]) != nil {
		return id, rid, false
	}
	f, err := os.OpenFile(filepath.Join(s.Root, parts[1], "msg", parts[3]), os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return id, rid, false
	}
	defer f.Close()
	r := bufio.NewReaderSize(io.LimitReader(f, 4096), 4096)
	var haveID bool
	for first := true; ; first = false {
		line, err := r.ReadString('\n')
		if err != nil || line == "\n" || first && line != envelopeMagic+"\n" {
			return id, rid, false
		}
		key, val, _ := strings.Cut(strings.TrimSuffix(line, "\n"), " ")
		switch key {
		case "id":
			id, err = msgid.Parse(val)
			haveID = err == nil
		case "rcpt":
			v, _, _ := strings.Cut(val, " ")
			rid, err = msgid.Parse(v)
			ok = err == nil && haveID && strings.HasSuffix(link, hexPrefix(id))
			return id, rid, ok
		}
	}
}

func hexPrefix(id msgid.ID) string { return id.String()[:2*locatorSize] }

// makeKey makes the key, crash-safe and race-free between processes: the
// octets go to a temporary file, fsynced, which is then hard-linked to the
// name (a link never replaces, so the first process's key wins and the
// others read it), and the root is fsynced, by every maker, winner or not,
// before it hands out an id. A process that finds the key already there
// does not fsync: the maker fsyncs before its first id, and an opener
// racing it in the milliseconds between link and fsync commits its own
// messages' links through the same filesystem journal after the key's.
func (s *Store) makeKey() error {
	var key [keySize]byte
	rand.Read(key[:]) // never fails on Linux (msgid.New)
	tmp := filepath.Join(s.Root, keyTmpPrefix+strconv.Itoa(os.Getpid())+"-"+msgid.New().String())
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	_, err = f.Write(key[:])
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.Link(tmp, s.keyFile()); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return durable.SyncDir(s.Root)
}

// cleanKeyTmp removes the temporary files of key makers that crashed.
func (s *Store) cleanKeyTmp(now time.Time) {
	ents, _ := os.ReadDir(s.Root)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), keyTmpPrefix) {
			if fi, err := e.Info(); err == nil && now.Sub(fi.ModTime()) >= StaleAge {
				os.Remove(filepath.Join(s.Root, e.Name()))
			}
		}
	}
}
