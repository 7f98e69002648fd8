// Package durable holds the few file operations that must survive a crash:
// every one ends with the data and the directory entry on disk (write to a
// temporary file, fsync, rename, fsync the directory).
package durable

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/google/renameio/v2"
)

// SyncDir fsyncs a directory, making the names created, renamed or removed
// in it durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// WriteFile atomically creates or replaces path with data. The temporary file
// is made in tmpdir (which must be on the same filesystem), so that a crash
// leaves its debris where stale-file cleaning looks. When WriteFile returns
// nil, the new content is on disk under its name.
func WriteFile(path string, data []byte, perm os.FileMode, tmpdir string) error {
	if err := renameio.WriteFile(path, data, perm, renameio.WithTempDir(tmpdir), renameio.WithStaticPermissions(perm)); err != nil {
		return err
	}
	return SyncDir(filepath.Dir(path))
}

// Mkdir creates dir if it is missing, and makes its name durable. It
// returns whether it created it.
func Mkdir(dir string, perm os.FileMode) (bool, error) {
	err := os.Mkdir(dir, perm)
	if errors.Is(err, fs.ErrExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, SyncDir(filepath.Dir(dir))
}
