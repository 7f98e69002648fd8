package tests

import (
	"strings"
	"testing"
)

// TestIMAPNoReceiptsSizesStable is a hostile review's trace, with the
// real binaries and python3's imaplib: a SEARCH HEADER retrieves nothing
// (the sender's store still says "unread", not "readheaders"), and a
// message's RFC822.SIZE after its first whole fetch is the length BODY[]
// served.
func TestIMAPNoReceiptsSizesStable(t *testing.T) {
	d := newIMAPDeployment(t, "Subject: plain\n\nhello\n", "Subject: third\n\nthree\n")
	script := imapHelpers + `
port = int(sys.argv[1])
M = imaplib.IMAP4("127.0.0.1", port)
M.login("bob", "bobpw")
M.select("INBOX")
typ, data = M.uid("SEARCH", None, "HEADER", "Subject", "nomatch")
print("search", typ, flush=True); input()
uids = sorted(fetch(M, "1:*", "(UID)").keys())
body = fetch(M, str(uids[0]), "(BODY.PEEK[])")[uids[0]][1]
size = int(re.search(rb"RFC822.SIZE (\d+)", M.uid("FETCH", str(uids[0]), "(RFC822.SIZE)")[1][0]).group(1))
print("sizes", len(body), size, flush=True); input()
M.logout()
`
	var lines []string
	python(t, script, d.port, func(line string) {
		lines = append(lines, line)
		if strings.HasPrefix(line, "search") {
			if line != "search NO" {
				t.Errorf("SEARCH HEADER of messages never fetched: %q, want NO", line)
			}
			for i := range 2 {
				if st := d.status(t, i); !strings.HasSuffix(st, "/unread") {
					t.Errorf("message %d after SEARCH HEADER: store says %q", i, st)
				}
			}
		}
		if strings.HasPrefix(line, "sizes") {
			f := strings.Fields(line)
			if len(f) != 3 || f[1] != f[2] {
				t.Errorf("BODY[] length and RFC822.SIZE: %q", line)
			}
		}
	})
	if len(lines) != 2 {
		t.Errorf("script output: %q", lines)
	}
}
