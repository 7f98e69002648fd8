package conf

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
)

// Groups of readers in the table's Readers column, besides programs'
// names.
const (
	EveryProgram = "every program"
	EveryServer  = "every server"
	EveryClient  = "every client"
)

// ReadBy returns the names of the settings a program reads, as the table
// says: those whose Readers name prog (im2000- left off: "agentd") or one
// of groups (EveryServer, ...), sorted. A daemon logs them at start and on
// SIGHUP (InForce), so the table and the log cannot disagree.
func ReadBy(prog string, groups ...string) []string {
	var out []string
	for _, s := range Settings() {
		if readBy(s.Readers, prog, groups) {
			out = append(out, s.Name)
		}
	}
	return out
}

func readBy(readers, prog string, groups []string) bool {
	for _, g := range groups {
		if strings.Contains(readers, g) {
			return true
		}
	}
	for _, r := range strings.Fields(readers) {
		if r == prog {
			return true
		}
	}
	return false
}

// secret settings are never shown, only whether they are set.
var secret = map[string]bool{"password": true, "smarthostpassword": true}

// computed are the settings whose value in force is not only their file:
// an environment variable overrides it, or the default depends on the
// machine. InForce shows what the programs use.
var computed = map[string]func(Dir) (string, error){
	"agent": Dir.Agent,
	"store": Dir.Store,
	"me":    Dir.Me,
}

// InForce describes the values of the named settings as read from d now,
// on one line for the log: "name=value" each, separated by blanks, in
// the order given. A Number shows its number (its default when the file
// is missing), a Text its value quoted as a Go string (so no blank or
// control character of a file reaches the log unescaped), "default" when
// the file is missing or empty and the default depends on the machine;
// a List the count of its lines, "lines:N" ("(none)" without a file); a File or a per-name
// directory (lists/) "(set)" or "(none)"; a secret (password) the same, never its value.
// A setting that cannot be read shows "unreadable" with the error.
func (d Dir) InForce(names []string) string {
	var b strings.Builder
	for i, name := range names {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(name)
		b.WriteByte('=')
		b.WriteString(d.inForce(name))
	}
	return b.String()
}

func (d Dir) inForce(name string) string {
	s, ok := Lookup(name)
	if !ok {
		return "(not a setting)"
	}
	unreadable := func(err error) string { return strconv.Quote("unreadable: " + err.Error()) }
	if f, ok := computed[name]; ok {
		v, err := f(d)
		if err != nil {
			return unreadable(err)
		}
		return strconv.Quote(v)
	}
	switch {
	case secret[name] || s.Kind == File || strings.HasSuffix(name, "/"):
		_, err := os.Stat(d.Path(name))
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return "(none)"
		case err != nil:
			return unreadable(err)
		}
		return "(set)"
	case s.Kind == Number:
		n, err := d.Num(name)
		if err != nil {
			return unreadable(err)
		}
		return strconv.FormatInt(n, 10)
	case s.Kind == List:
		lines, err := d.Lines(name)
		if err != nil {
			return unreadable(err)
		}
		if lines == nil {
			return "(none)"
		}
		return fmt.Sprintf("lines:%d", len(lines))
	}
	v, err := d.String(name, "")
	switch {
	case err != nil:
		return unreadable(err)
	case v == "" && s.Default == "":
		return "(default)"
	case v == "":
		v = s.Default
	}
	return strconv.Quote(v)
}
