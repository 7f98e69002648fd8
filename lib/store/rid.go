package store

import (
	"crypto/aes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"im2000/lib/durable"
	"im2000/lib/msgid"
)

// Recipient identifiers without a file each (issue 17): a recipient id is
// the AES-256 encryption, under the store's key, of one block holding the
// first locatorSize octets of the message id and the recipient's index in
// the envelope (4 octets, big-endian). Lookup decrypts it, finds the
// message through the one link rcpt/<locator> the commit made for the
// whole message, and takes the id only if the envelope lists exactly it at
// that index. So the ids stay unguessable (a pseudorandom permutation of
// distinct blocks, 128 bits; a forged id decrypts to noise or to an index
// whose id differs) and the store keeps one inode per message, not one per
// recipient. Ids handed out before, with a link rcpt/<rid> each, keep
// working through their links.

// keySize is the length of the store's key: AES-256.
const keySize = 32

// locatorSize is how much of the message id names it in rcpt/: the rest of
// the block is the recipient's index. 96 random bits never collide among
// the messages one store holds; if they did, the second commit would fail
// (its link exists) rather than hand out ids that lead elsewhere.
const locatorSize = msgid.Size - 4

// keyFile is the store's key, in its root: made once, never changed, since
// every recipient id handed out depends on it. "key" is no account name.
func (s *Store) keyFile() string { return filepath.Join(s.Root, "key") }

// loadKey reads the store's key, making it first if the store has none.
// Making it is crash-safe and race-free between processes: the octets go
// to a temporary file, fsynced, which is then hard-linked to the name (a
// link never replaces, so the first process's key wins and the others
// read it), and the root is fsynced.
func (s *Store) loadKey() error {
	b, err := os.ReadFile(s.keyFile())
	if errors.Is(err, fs.ErrNotExist) {
		if err := s.makeKey(); err != nil {
			return fmt.Errorf("store key %s: %w", s.keyFile(), err)
		}
		b, err = os.ReadFile(s.keyFile())
	}
	if err != nil {
		return fmt.Errorf("store key: %w", err)
	}
	if len(b) != keySize {
		return fmt.Errorf("store key %s is %d octets, not %d: restore it from a backup (a new key would void every recipient identifier handed out)", s.keyFile(), len(b), keySize)
	}
	fi, err := os.Stat(s.keyFile())
	if err != nil {
		return err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(s.keyFile(), 0o600); err != nil {
			s.Warnings = append(s.Warnings, fmt.Sprintf("%s is open to other users (mode %04o) and cannot be closed: %v; chmod 600 it", s.keyFile(), fi.Mode().Perm(), err))
		}
	}
	// A key another process has just made may not have its name on disk
	// yet: make sure before handing out ids under it. Past StaleAge the
	// kernel has long written it back.
	if time.Since(fi.ModTime()) < StaleAge {
		if err := durable.SyncDir(s.Root); err != nil {
			return err
		}
	}
	s.block, err = aes.NewCipher(b)
	return err
}

func (s *Store) makeKey() error {
	var key [keySize]byte
	rand.Read(key[:]) // never fails on Linux (msgid.New)
	tmp := filepath.Join(s.Root, ".key-"+strconv.Itoa(os.Getpid())+"-"+msgid.New().String())
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
		if strings.HasPrefix(e.Name(), ".key-") {
			if fi, err := e.Info(); err == nil && now.Sub(fi.ModTime()) >= StaleAge {
				os.Remove(filepath.Join(s.Root, e.Name()))
			}
		}
	}
}

// recipientID is the identifier of recipient i of message id.
func (s *Store) recipientID(id msgid.ID, i int) msgid.ID {
	var in, out msgid.ID
	copy(in[:locatorSize], id[:locatorSize])
	binary.BigEndian.PutUint32(in[locatorSize:], uint32(i))
	s.block.Encrypt(out[:], in[:])
	return out
}

// derived says whether recipient i of env has an identifier derived from
// the message's (and so no link of its own).
func (s *Store) derived(env *Envelope, i int) bool {
	return env.Recipients[i].ID == s.recipientID(env.ID, i)
}

// locatorPath is the link rcpt/<24 hex digits> that leads a derived
// recipient id to message id. Its name is shorter than a recipient or
// list id's, so the two kinds never meet.
func (s *Store) locatorPath(id msgid.ID) string {
	return filepath.Join(s.Root, "rcpt", hex.EncodeToString(id[:locatorSize]))
}

// decrypt returns the locator path and index a recipient id names if it
// is a derived one; the caller checks it against the envelope.
func (s *Store) decrypt(rid msgid.ID) (string, [locatorSize]byte, int) {
	var plain msgid.ID
	var loc [locatorSize]byte
	s.block.Decrypt(plain[:], rid[:])
	copy(loc[:], plain[:locatorSize])
	i := binary.BigEndian.Uint32(plain[locatorSize:])
	return filepath.Join(s.Root, "rcpt", hex.EncodeToString(loc[:])), loc, int(i)
}
