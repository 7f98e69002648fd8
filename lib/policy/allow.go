package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"im2000/lib/addr"
	"im2000/lib/durable"
)

// Allow adds "allow ARG" (an address, @domain or @.domain) to the file at
// path, keeping its other lines, durably (a temporary file, fsync, rename,
// fsync of the directory). The file must parse before and after; nothing is
// written when it already allows exactly ARG. A deny of exactly ARG is an
// error: an accept does not override the user's own deny.
//
// The read-modify-write holds an exclusive flock on PATH.lock, so that
// concurrent Allows (two fetch runs, a run and a script) each keep their
// line. A symbolic link is followed: the file it names is rewritten (a
// user who keeps the policy elsewhere keeps it there); a dangling link is
// refused. The new file must decide ARG as allowed (for an address:
// Decide answers Fetch; for a domain: the domain's own rule is the allow
// just added), else nothing is written: the line must mean what the
// user asked for.
func Allow(path, arg string) error {
	key, table, err := target(arg)
	if err != nil {
		return err
	}
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
		real, err := filepath.EvalSymlinks(path)
		if err != nil {
			return fmt.Errorf("%s is a symbolic link to nothing readable (%v): fix or remove it", path, err)
		}
		path = real
	}
	unlock, err := lockFile(path + ".lock")
	if err != nil {
		return err
	}
	defer unlock()
	old, err := readBounded(path)
	perm := os.FileMode(0o600)
	if errors.Is(err, fs.ErrNotExist) {
		err = nil
	} else if fi, serr := os.Stat(path); serr == nil {
		perm = fi.Mode().Perm()
	}
	if err != nil {
		return err
	}
	p, err := Parse(path, bytes.NewReader(old))
	if err != nil {
		return err
	}
	if r, ok := table(p)[key]; ok {
		if r.deny {
			return fmt.Errorf("%s line %d denies %s: remove that line to accept it", path, r.line, arg)
		}
		return nil // already allowed in so many words
	}
	data := append([]byte{}, old...)
	if len(data) > 0 && data[len(data)-1] != '\n' {
		data = append(data, '\n')
	}
	data = append(data, "allow "+arg+"\n"...)
	np, err := Parse(path, bytes.NewReader(data))
	if err != nil {
		return err
	}
	if r, ok := table(np)[key]; !ok || r.deny || !allows(np, arg) {
		return fmt.Errorf("\"allow %s\" would not allow %s in %s: add the line by hand", arg, arg, path)
	}
	return durable.WriteFile(path, data, perm, filepath.Dir(path))
}

// allows reports whether p fetches the address arg (a domain: true, its
// rule was checked by the caller).
func allows(p *Policy, arg string) bool {
	if len(arg) > 0 && arg[0] == '@' {
		return true
	}
	m, err := addr.Parse(arg)
	return err == nil && p.Decide(m).Verdict == Fetch
}

// lockFile takes an exclusive flock on path (created 0600), released by
// the function returned.
func lockFile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	return func() { f.Close() }, nil
}
