package conf

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
)

func TestReadBy(t *testing.T) {
	got := ReadBy("queryd", EveryServer, EveryProgram)
	for _, want := range []string{"agent", "authdelay", "checkpassword", "me", "sessionsperaddr", "tlscert"} {
		if !slices.Contains(got, want) {
			t.Errorf("ReadBy(queryd) = %v, lacks %s", got, want)
		}
	}
	for _, not := range []string{"agentquota", "routes", "listfile", "databytes"} {
		if slices.Contains(got, not) {
			t.Errorf("ReadBy(queryd) = %v, has %s", got, not)
		}
	}
	if l := ReadBy("fetch"); !slices.Contains(l, "maildir") || slices.Contains(l, "agentquota") {
		t.Errorf("ReadBy(fetch) = %v", l)
	}
	// A reader is a whole word: "d" is in "agentd" but names no program.
	if l := ReadBy("d"); l != nil {
		t.Errorf("ReadBy(d) = %v, want none", l)
	}
}

func TestInForce(t *testing.T) {
	dir := t.TempDir()
	write := func(name, v string) {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("me", "example.org\n")
	write("agentquota", "5\n")
	write("routes", "# a comment\n_rnasp._tcp.a x:1\n_rnasp._tcp.b y:2\n")
	write("password", "hunter2 secret\n")
	write("rnasp", "a b\x01\n")
	write("timeout", "soon\n")
	t.Setenv("IM2000_AGENT", "/spool/agent")
	d := Dir(dir)
	tlsseen, _ := Lookup("tlsseen") // a Text with a default: the table's
	got := d.InForce([]string{"me", "agent", "agentquota", "agentrate", "routes", "resolvers", "password", "passwords", "rnasp", "listdstate", "tlsseen", "timeout"})
	want := `me="example.org" agent="/spool/agent" agentquota=5 agentrate=6000 routes=lines:2 resolvers=(none) password=(set) passwords=(none) rnasp="a b\x01" listdstate=(default) tlsseen=` + strconv.Quote(tlsseen.Default) + ` timeout="unreadable: ` + filepath.Join(dir, "timeout") + `: want a whole number of 0 or more, found \"soon\""`
	if got != want {
		t.Errorf("InForce:\n got %s\nwant %s", got, want)
	}
}

// TestInForceSecrets: notifyd logs its settings, smarthostpassword among
// them; the log shows whether it is set, never the password.
func TestInForceSecrets(t *testing.T) {
	dir := t.TempDir()
	d := Dir(dir)
	if got := d.InForce([]string{"smarthostpassword"}); got != "smarthostpassword=(none)" {
		t.Errorf("InForce without the file: %s", got)
	}
	if err := os.WriteFile(d.Path("smarthostpassword"), []byte("hunter2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := d.InForce([]string{"smarthostpassword"}); got != "smarthostpassword=(set)" {
		t.Errorf("InForce of a password: %s", got)
	}
}
