package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"im2000/lib/addr"
	"im2000/lib/conf"
	"im2000/lib/fail"
	"im2000/lib/store"
)

// checkSender says what is wrong with the sender's address before
// anything else is read: a bad me (the domain) apart from a bad account
// name, each naming the setting to fix.
func checkSender(d conf.Dir, s *conf.Local) error {
	if _, err := addr.Parse("postmaster@" + s.Me); err != nil {
		return fail.Perm(fmt.Errorf("%q is not a domain name: write this host's mail domain to %s", s.Me, d.Path("me")))
	}
	if err := store.CheckAccount(s.Account); err != nil {
		return fail.Perm(fmt.Errorf("%w: set IM2000_ACCOUNT to your account's name (letters, digits, '.', '_', '-')", err))
	}
	return nil
}

// checkAccount refuses, before anything is written, to send as an
// account the local store does not know, since the first message would
// otherwise make an archive for it: the store knows an account that has
// an archive, or, for an account taken from the login name (IM2000_ACCOUNT
// unset), a line in the passwords file. An account named in
// IM2000_ACCOUNT that has no archive yet is taken as the admin's word (a
// private deployment's first message makes its archive), unless the
// passwords file, where there is one, does not list it.
func checkAccount(d conf.Dir, account string) error {
	root, err := d.Store()
	if err != nil {
		return err
	}
	fi, err := os.Stat(filepath.Join(root, account))
	switch {
	case err == nil && fi.IsDir():
		return nil
	case errors.Is(err, fs.ErrPermission):
		return err // main adds the hint about remote
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return fail.Temp(err)
	}
	lines, err := d.Lines("passwords")
	if err != nil && !errors.Is(err, fs.ErrPermission) {
		return err
	}
	listed := false
	for _, l := range lines {
		if name, _, _ := strings.Cut(l, ":"); name == account {
			listed = true
		}
	}
	explicit := os.Getenv("IM2000_ACCOUNT") != ""
	switch {
	case listed, explicit && lines == nil:
		return nil
	case explicit:
		return fail.Perm(fmt.Errorf("the store %s has no account %q (no archive, and not in %s): check IM2000_ACCOUNT, or have the admin add it (conf/add-account.sh)", root, account, d.Path("passwords")))
	}
	return fail.Perm(fmt.Errorf("the store %s has no account %q, the login name taken since IM2000_ACCOUNT is not set: set IM2000_ACCOUNT to your account, or have the admin add this one (conf/add-account.sh)", root, account))
}

// permissionHint says what to do when the store cannot be written: it
// belongs to the store's own user, and others submit over MSOAP.
func permissionHint(d conf.Dir, err error) error {
	if !errors.Is(err, fs.ErrPermission) {
		return err
	}
	return fail.Temp(fmt.Errorf("%w: the store belongs to another user, so submit over MSOAP instead: write the store's host:port (or domain) to %s and your password to %s", err, d.Path("remote"), d.Path("password")))
}
