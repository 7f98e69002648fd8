package tests

import (
	"strings"
	"testing"
)

// TestIMAPPeekAndSessions, with Python's imaplib and the real binaries:
// BODY.PEEK[], BINARY.PEEK[1] and a partial BODY.PEEK[]<0.10> set no
// \Seen (the sender sees readall all the same: the message was read
// whole), BODY[] does; a second session of the user hears of the first's
// STORE +FLAGS (\Seen) and (\Flagged); and two sessions interleaving
// writes lose nothing: A stores right after B did, without a command in
// between, and A's client is told B's flag (merged into A's STORE answer)
// and B's expunge (at A's next NOOP), and fetches the expunged message no
// more.
func TestIMAPPeekAndSessions(t *testing.T) {
	d := newIMAPDeployment(t, "Subject: peek\n\nbody one, long enough\n", "Subject: two\n\nbody two\n", "Subject: three\n\nbody three\n")
	script := imapHelpers + `
port = int(sys.argv[1])
def session():
    M = imaplib.IMAP4("127.0.0.1", port)
    M.login("bob", "bobpw")
    typ, data = M.select("INBOX")
    assert typ == "OK" and data == [b"3"], data
    return M
A = session()
B = session()
typ, data = A.uid("SEARCH", None, "ALL")
u = [int(x) for x in data[0].split()]
assert len(u) == 3, u
for items in ("(UID FLAGS BODY.PEEK[])", "(UID FLAGS BINARY.PEEK[1])", "(UID FLAGS BODY.PEEK[]<0.10>)", "(UID FLAGS BODY.PEEK[TEXT]<2.5>)"):
    got = fetch(A, str(u[0]), items)[u[0]]
    assert "Seen" not in got[0] and got[1], (items, got)
assert "Seen" not in fetch(A, str(u[0]), "(UID FLAGS)")[u[0]][0]
step("peeked")
got = fetch(A, str(u[0]), "(UID BODY[])")[u[0]]
assert b"body one" in got[1] and "\\Seen" in got[0], got
step("read")

# A's STOREs, seen by B.
typ, data = A.uid("STORE", str(u[1]), "+FLAGS", "(\\Seen)")
assert typ == "OK", data
typ, data = A.uid("STORE", str(u[2]), "+FLAGS", "(\\Flagged)")
assert typ == "OK", data
typ, data = B.noop()
told = b" ".join(x for x in B.response("FETCH")[1] if x)
assert b"\\Seen" in told and b"\\Flagged" in told, told
flags = fetch(B, "1:*", "(UID FLAGS)")
assert "\\Seen" in flags[u[0]][0] and "\\Seen" in flags[u[1]][0] and "\\Flagged" in flags[u[2]][0], flags

# B writes, then A writes without a command in between.
typ, data = B.uid("STORE", str(u[2]), "+FLAGS", "(\\Answered)")
assert typ == "OK", data
typ, data = A.uid("STORE", str(u[2]), "+FLAGS", "(\\Draft)")
told = b" ".join(x for x in data if x)
assert b"\\Answered" in told and b"\\Draft" in told and b"\\Flagged" in told, told
typ, data = B.uid("STORE", str(u[1]), "+FLAGS", "(\\Deleted)")
typ, data = B.expunge()
assert typ == "OK" and data == [b"2"], (typ, data)
step("expunged")
typ, data = A.uid("STORE", str(u[0]), "+FLAGS", "(\\Flagged)")
assert typ == "OK", data
assert b"EXPUNGE" not in b" ".join(x for x in data if x), data
typ, data = A.noop()
typ, data = A.response("EXPUNGE")
assert data == [b"2"], data
typ, data = A.uid("SEARCH", None, "ALL")
assert data[0].split() == [str(u[0]).encode(), str(u[2]).encode()], data
typ, data = A.uid("FETCH", str(u[1]), "(BODY.PEEK[])")
assert typ == "OK" and data == [None], data
flags = fetch(A, "1:*", "(UID FLAGS)")
assert "\\Answered" in flags[u[2]][0] and "\\Draft" in flags[u[2]][0], flags
A.logout()
B.logout()
print("done", flush=True)
`
	python(t, script, d.port, func(line string) {
		switch line {
		case "peeked":
			if s := d.status(t, 0); s != "notifying/readall" {
				t.Fatalf("message 1 after BODY.PEEK[]: %s", s)
			}
		case "read":
		case "expunged":
			if s := d.status(t, 1); !strings.HasPrefix(s, "silenced/") {
				t.Fatalf("message 2 after B's expunge: %s", s)
			}
		case "done":
		default:
			t.Fatalf("python: %s", line)
		}
	})
}
