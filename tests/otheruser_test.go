package tests

import (
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"testing"
)

// otherName is the local user other than the tests' own, a system user
// made on first use.
const otherName = "im2000-other"

// otherUser is the uid and gid of otherName, for the tests that run
// a program as someone else. It needs root: CI runs as root; elsewhere
// the test is skipped with the reason.
func otherUser(t *testing.T) (uid, gid int) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("running a command as another user needs root (CI runs as root)")
	}
	u, err := user.Lookup(otherName)
	if err != nil {
		if out, err := exec.Command("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", otherName).CombinedOutput(); err != nil {
			t.Fatalf("useradd: %v: %s", err, out)
		}
		if u, err = user.Lookup(otherName); err != nil {
			t.Fatal(err)
		}
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	return uid, gid
}
