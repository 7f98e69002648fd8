package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"im2000/lib/msgid"
)

// TestStoreKey: the key is made once, 0600, the same for every process
// that opens a new store at once, kept across opens, and a damaged one
// stops the store rather than being replaced.
func TestStoreKey(t *testing.T) {
	root := t.TempDir()
	os.Chmod(root, 0o700) // only the key's warning below
	var wg sync.WaitGroup
	ids := make([]msgid.ID, 8)
	errs := make([]error, len(ids))
	var probe msgid.ID
	for i := range ids {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			s, err := Open(root)
			if err == nil {
				ids[i] = s.recipientID(probe, 7)
			}
			errs[i] = err
		}(i)
	}
	wg.Wait()
	for i := range ids {
		if errs[i] != nil || ids[i] != ids[0] {
			t.Fatalf("opener %d: %v, %s vs %s", i, errs[i], ids[i], ids[0])
		}
	}
	key := filepath.Join(root, ".key")
	fi, err := os.Stat(key)
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Size() != keySize {
		t.Fatalf("key: %v, %v", fi, err)
	}
	ents, _ := os.ReadDir(root)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".key-") {
			t.Errorf("temporary key file %s left", e.Name())
		}
	}
	// A key open to others is closed, and said so even then: it may have
	// been copied.
	os.Chmod(key, 0o644)
	s, err := Open(root)
	if err != nil || s.recipientID(probe, 7) != ids[0] {
		t.Fatalf("reopened: %v", err)
	}
	if fi, _ := os.Stat(key); fi.Mode().Perm() != 0o600 {
		t.Errorf("an open key left %04o", fi.Mode().Perm())
	}
	if len(s.Warnings) != 1 || !strings.Contains(s.Warnings[0], "may have been copied") {
		t.Errorf("warnings for an open key: %q", s.Warnings)
	}
	if s, _ := Open(root); len(s.Warnings) != 0 {
		t.Errorf("warnings for a closed key: %q", s.Warnings)
	}
	if CheckAccount(".key") == nil || CheckAccount("key") != nil {
		t.Error("account names: .key accepted or key refused")
	}
	os.WriteFile(key, []byte("short"), 0o600)
	if _, err := Open(root); err == nil || !strings.Contains(err.Error(), "restore it") {
		t.Fatalf("a damaged key: %v", err)
	}
	if b, _ := os.ReadFile(key); string(b) != "short" {
		t.Fatal("a damaged key was replaced")
	}
	// A crashed maker's temporary file goes with Clean once stale; the
	// key, whose name shares its prefix but for the hyphen, stays.
	os.WriteFile(key, bytes.Repeat([]byte{1}, keySize), 0o600)
	tmp := filepath.Join(root, ".key-1-x")
	os.WriteFile(tmp, []byte("half"), 0o600)
	old := time.Now().Add(-2 * StaleAge)
	os.Chtimes(key, old, old)
	s, err = Open(root)
	if err != nil {
		t.Fatal(err)
	}
	s.Clean(time.Now().Add(StaleAge + time.Minute))
	if _, err := os.Stat(tmp); err == nil {
		t.Error("Clean left a stale temporary key file")
	}
	if _, err := os.Stat(key); err != nil {
		t.Errorf("Clean took the key: %v", err)
	}
}

// TestLostKey: a store whose messages have derived ids refuses to open
// without its key, or with another one, saying to restore it, and makes
// no key of its own; with the key back, every id opens again. A store
// with messages of old (ids with links of their own) gets a key.
func TestLostKey(t *testing.T) {
	s, a := newAccount(t)
	env, err := inject(t, a, submission(t), "x", Limits{})
	if err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(s.Root, ".key")
	saved, _ := os.ReadFile(key)
	os.Remove(key)
	_, err = Open(s.Root)
	if err == nil || !strings.Contains(err.Error(), "is missing") || !strings.Contains(err.Error(), "restore it") {
		t.Fatalf("a store without its key: %v", err)
	}
	if _, err := os.Lstat(key); err == nil {
		t.Fatal("a new key was made for a store with derived ids")
	}
	other := bytes.Repeat([]byte{7}, keySize)
	os.WriteFile(key, other, 0o600)
	_, err = Open(s.Root)
	if err == nil || !strings.Contains(err.Error(), "is not the key message "+env.ID.String()) {
		t.Fatalf("a store with a wrong key: %v", err)
	}
	if b, _ := os.ReadFile(key); !bytes.Equal(b, other) {
		t.Fatal("a wrong key was replaced")
	}
	os.WriteFile(key, saved, 0o600)
	s, err = Open(s.Root)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range env.Recipients {
		m, j, err := s.Lookup(r.ID, time.Now())
		if err != nil || j != i {
			t.Fatalf("recipient %d with the key restored: %v", i, err)
		}
		m.Close()
	}
	// A message of old: its recipient ids have links rcpt/<rid>, no
	// locator. An account of old may be named key.
	old := t.TempDir()
	os.Mkdir(filepath.Join(old, "rcpt"), 0o700)
	os.Mkdir(filepath.Join(old, "key"), 0o700)
	os.Symlink("../key/msg/"+env.ID.String(), filepath.Join(old, "rcpt", env.Recipients[0].ID.String()))
	if _, err := Open(old); err != nil {
		t.Fatalf("a store of old: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(old, ".key")); err != nil || fi.Size() != keySize {
		t.Fatalf("a store of old got no key: %v", err)
	}
	if _, err := s.Account("key"); err != nil {
		t.Fatal(err)
	}
}

// TestKeyNotAFile: a key that is a symbolic link, a FIFO or a directory
// is refused at once (no hang on the FIFO), and not followed or replaced.
func TestKeyNotAFile(t *testing.T) {
	root := t.TempDir()
	key := filepath.Join(root, ".key")
	elsewhere := filepath.Join(t.TempDir(), "k")
	os.WriteFile(elsewhere, bytes.Repeat([]byte{1}, keySize), 0o644)
	os.Symlink(elsewhere, key)
	if _, err := Open(root); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("a key that is a symbolic link: %v", err)
	}
	if fi, _ := os.Stat(elsewhere); fi.Mode().Perm() != 0o644 {
		t.Errorf("the link's target was chmodded to %04o", fi.Mode().Perm())
	}
	os.Remove(key)
	if err := syscall.Mkfifo(key, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := Open(root); done <- err }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "not a file") {
			t.Errorf("a key that is a FIFO: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Open hangs on a key that is a FIFO")
	}
	os.Remove(key)
	os.Mkdir(key, 0o700)
	if _, err := Open(root); err == nil || !strings.Contains(err.Error(), "not a file") {
		t.Errorf("a key that is a directory: %v", err)
	}
}

// TestHighIndex: an id that decrypts to the message's locator and an
// index of 2^31 or more is ErrNoSuch (as an int on a 32-bit machine it
// was negative, passed the bounds check and panicked).
func TestHighIndex(t *testing.T) {
	s, a := newAccount(t)
	env, err := inject(t, a, submission(t), "x", Limits{})
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range []uint32{2, 1 << 31, 1<<32 - 1} {
		var in, rid msgid.ID
		copy(in[:], env.ID[:locatorSize])
		binary.BigEndian.PutUint32(in[locatorSize:], i)
		s.block.Encrypt(rid[:], in[:])
		if m, _, err := s.Lookup(rid, time.Now()); !errors.Is(err, ErrNoSuch) {
			if m != nil {
				m.Close()
			}
			t.Errorf("index %d: %v", i, err)
		}
	}
}
