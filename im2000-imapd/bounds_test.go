package main

// Regression tests for the second hostile review (issue 19): the costs a
// message or a command can make a session pay are bounded, asserted by
// allocations and outcomes, never by time.

import (
	"bytes"
	"os"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
)

// nestedRFC822 is a multipart message whose one part is message/rfc822
// nested depth times: about 32 octets a level.
func nestedRFC822(depth int) string {
	var b strings.Builder
	b.WriteString("Subject: nest\r\nContent-Type: multipart/mixed; boundary=zz\r\n\r\n--zz\r\n")
	for i := 0; i < depth; i++ {
		b.WriteString("Content-Type: message/rfc822\r\n\r\n")
	}
	b.WriteString("Subject: x\r\n\r\nhello\r\n--zz--\r\n")
	return b.String()
}

// nestedMultipart is a multipart nested depth times.
func nestedMultipart(depth int) string {
	var b strings.Builder
	b.WriteString("Subject: nest\r\nContent-Type: multipart/mixed; boundary=b0\r\n\r\n")
	for i := 0; i < depth; i++ {
		b.WriteString("--b" + strconv.Itoa(i) + "\r\nContent-Type: multipart/mixed; boundary=b" + strconv.Itoa(i+1) + "\r\n\r\n")
	}
	b.WriteString("--b" + strconv.Itoa(depth) + "\r\n\r\nhello\r\n")
	return b.String()
}

// withMessages serves msgs as the mailbox for the test's length.
func withMessages(t *testing.T, msgs []string) {
	old := messages
	t.Cleanup(func() { messages = old })
	messages = msgs
}

// allocated returns what f allocated in the whole process (the session
// runs in this process).
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// FETCH BODYSTRUCTURE of nested message/rfc822 parts: the library's
// walker copied the rest of the message at every level (a 128 KB message
// cost about 350 MiB); now a few times the message, and nothing more the
// second time.
func TestNestedBodyStructureBounded(t *testing.T) {
	durableWrites = false
	withMessages(t, []string{nestedRFC822(4000)})
	size := uint64(len(messages[0]))
	cl := dialSession(t, testConfig(t.TempDir(), newMemory(), time.Hour))
	cl.cmd("a", "LOGIN bob pw")
	cl.cmd("b", "SELECT INBOX")
	var r string
	first := allocated(func() { r = cl.cmd("c", "FETCH 1 (BODYSTRUCTURE)") })
	if !strings.Contains(r, "c OK") {
		t.Fatalf("FETCH BODYSTRUCTURE: %q", r[max(0, len(r)-200):])
	}
	if !strings.Contains(strings.ToUpper(r), `"APPLICATION" "OCTET-STREAM"`) {
		t.Errorf("the message/rfc822 past %d levels is not one opaque part", maxNesting)
	}
	if n := strings.Count(strings.ToUpper(r), `"MESSAGE" "RFC822"`); n > maxNesting {
		t.Errorf("%d levels of message/rfc822 described, want at most %d", n, maxNesting)
	}
	if first > 16*size+4<<20 {
		t.Errorf("FETCH BODYSTRUCTURE of a %d-octet message allocated %d octets", size, first)
	}
	again := allocated(func() { r = cl.cmd("d", "FETCH 1 (BODYSTRUCTURE)") })
	if !strings.Contains(r, "d OK") || again > size {
		t.Errorf("FETCH BODYSTRUCTURE again allocated %d octets (message %d): %q", again, size, r[max(0, len(r)-80):])
	}
	t.Logf("message %d octets: first FETCH allocated %d KiB, the second %d KiB", size, first>>10, again>>10)
}

// Nested multiparts: each level scanned all it holds again; the
// structure stops at maxNesting.
func TestNestedMultipartBounded(t *testing.T) {
	durableWrites = false
	withMessages(t, []string{nestedMultipart(1000)})
	size := uint64(len(messages[0]))
	cl := dialSession(t, testConfig(t.TempDir(), newMemory(), time.Hour))
	cl.cmd("a", "LOGIN bob pw")
	cl.cmd("b", "SELECT INBOX")
	var r string
	n := allocated(func() { r = cl.cmd("c", "FETCH 1 (BODYSTRUCTURE)") })
	if !strings.Contains(r, "c OK") {
		t.Fatalf("FETCH BODYSTRUCTURE: %q", r[max(0, len(r)-200):])
	}
	if d := strings.Count(strings.ToUpper(r), `"MIXED"`); d > maxNesting {
		t.Errorf("%d levels of multipart described, want at most %d", d, maxNesting)
	}
	if n > 16*size+4<<20 {
		t.Errorf("FETCH BODYSTRUCTURE of a %d-octet message allocated %d octets", size, n)
	}
	r = cl.cmd("d", "FETCH 1 (BODY.PEEK[1"+strings.Repeat(".1", 100)+"])")
	if !strings.Contains(r, "d NO [CANNOT]") {
		t.Errorf("a section 101 parts deep: %q", r)
	}
}

// The bounded walker describes ordinary messages as the library does.
func TestBodyStructureAsLibrary(t *testing.T) {
	msgs := []string{
		"Subject: one\r\nFrom: a@example.org\r\n\r\nbody one\r\n",
		"Subject: three\nContent-Type: multipart/mixed; boundary=x\n\n--x\n\npart\n--x--\n",
		"Content-Type: multipart/mixed; boundary=\"o\"\r\nContent-Language: en, de\r\n\r\npre\r\n--o\r\n" +
			"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nhi=\r\nthere\r\n--o\r\n" +
			"Content-Type: message/rfc822\r\nContent-Disposition: attachment; filename=f.eml\r\n\r\n" +
			"Subject: inner\r\nContent-Type: multipart/alternative; boundary=i\r\n\r\n--i\r\nContent-Type: text/html\r\n\r\n<p>x</p>\r\n--i--\r\n" +
			"\r\n--o\r\nContent-Type: image/png; name=a.png\r\nContent-Id: <a@b>\r\nContent-Description: pic\r\nContent-Location: here\r\n\r\niVBORw0K\r\n--o--\r\nepilogue\r\n",
		"Content-Type: message/rfc822\r\n\r\nSubject: bare\r\n\r\nx\r\n",
		"Content-Type: multipart/mixed; boundary=never\r\n\r\nno parts at all\r\n",
		"Content-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; x\r\n",
	}
	for i, m := range msgs {
		want := mend(imapserver.ExtractBodyStructure(bytes.NewReader([]byte(m))))
		if got := bodyStructure([]byte(m)); !reflect.DeepEqual(got, want) {
			t.Errorf("message %d: structure\n%#v\nwant the library's\n%#v", i, got, want)
		}
	}
}

// SEARCH with thousands of HEADER keys: each key of each message reopened
// its cached header and read 256 KiB (825 MiB a message for 3,300 keys);
// now each message's header is read once a SEARCH.
func TestSearchHeaderReadOnce(t *testing.T) {
	durableWrites = false
	var msgs []string
	for i := 0; i < 3; i++ {
		msgs = append(msgs, "Subject: s"+strconv.Itoa(i)+"\r\nFrom: a@example.org\r\n\r\nbody\r\n")
	}
	withMessages(t, msgs)
	cl := dialSession(t, testConfig(t.TempDir(), newMemory(), time.Hour))
	cl.cmd("a", "LOGIN bob pw")
	cl.cmd("b", "SELECT INBOX")
	cl.cmd("c", "FETCH 1:* (BODY.PEEK[HEADER])")
	q := strings.Repeat("NOT HEADER X y ", 3300)
	var r string
	n := allocated(func() { r = cl.cmd("d", "SEARCH "+q+"HEADER subject S1") })
	if !strings.Contains(r, "* SEARCH 2\r\n") || !strings.Contains(r, "d OK") {
		t.Errorf("SEARCH: %q", r[max(0, len(r)-100):])
	}
	if n > 32<<20 {
		t.Errorf("a SEARCH of 3,300 keys in 3 messages allocated %d MiB", n>>20)
	}
}

// keys x messages is bounded: past it, a clear NO.
func TestSearchWorkBounded(t *testing.T) {
	durableWrites = false
	var msgs []string
	for i := 0; i < 700; i++ {
		msgs = append(msgs, "Subject: s\r\n\r\nb\r\n")
	}
	withMessages(t, msgs)
	cl := dialSession(t, testConfig(t.TempDir(), newMemory(), time.Hour))
	cl.cmd("a", "LOGIN bob pw")
	cl.cmd("b", "SELECT INBOX")
	r := cl.cmd("c", "SEARCH "+strings.Repeat("NOT FLAGGED ", 4000)+"ALL")
	if !strings.Contains(r, "c NO [LIMIT]") {
		t.Errorf("SEARCH of 4,000 keys in 700 messages: %q", r[max(0, len(r)-200):])
	}
	if r := cl.cmd("d", "SEARCH UNFLAGGED"); !strings.Contains(r, "d OK") {
		t.Errorf("SEARCH UNFLAGGED: %q", r[max(0, len(r)-200):])
	}
	// A set's ranges are tested one by one: each counts (issue 19, third
	// review: 8,926 ranges were one key).
	var set []string
	for i := 0; i < 4000; i++ {
		set = append(set, strconv.Itoa(2*i+1))
	}
	for _, key := range []string{"", "UID "} {
		if r := cl.cmd("e", "SEARCH "+key+strings.Join(set, ",")); !strings.Contains(r, "e NO [LIMIT]") {
			t.Errorf("SEARCH %sof 4,000 ranges in 700 messages: %q", key, r[max(0, len(r)-200):])
		}
	}
	if r := cl.cmd("f", "SEARCH "+strings.Join(set[:100], ",")); !strings.Contains(r, "f OK") {
		t.Errorf("SEARCH of 100 ranges in 700 messages: %q", r[max(0, len(r)-200):])
	}
}

// SEARCH HEADER matches header fields, not body lines that look like
// them, once the whole message is cached.
func TestSearchHeaderNotBody(t *testing.T) {
	durableWrites = false
	withMessages(t, []string{"Subject: hi\r\nX-Folded: one\r\n two\r\n\r\nX-Secret: yes\r\n"})
	cl := dialSession(t, testConfig(t.TempDir(), newMemory(), time.Hour))
	cl.cmd("a", "LOGIN bob pw")
	cl.cmd("b", "SELECT INBOX")
	cl.cmd("c", "FETCH 1 (BODY.PEEK[])")
	if r := cl.cmd("d", "SEARCH HEADER X-Secret yes"); strings.Contains(r, "* SEARCH 1") {
		t.Errorf("SEARCH HEADER X-Secret matched a body line: %q", r)
	}
	if r := cl.cmd("e", "SEARCH HEADER subject HI HEADER X-Folded \"one two\""); !strings.Contains(r, "* SEARCH 1") {
		t.Errorf("SEARCH HEADER of the header's fields: %q", r)
	}
}

// imapcachebytes holds across the sessions of one user: each counted only
// its own writes after its first count of the files (8 sessions left 4.5
// times the bound).
func TestCacheBoundAcrossSessions(t *testing.T) {
	durableWrites = false
	var msgs []string
	for i := 0; i < 60; i++ {
		msgs = append(msgs, "Subject: s"+strconv.Itoa(i)+"\r\n\r\n"+strings.Repeat("x", 1000)+"\r\n")
	}
	withMessages(t, msgs)
	dir := t.TempDir()
	m := newMemory()
	var cls []*client
	for i := 0; i < 8; i++ {
		c := testConfig(dir, m, time.Hour)
		c.cacheBytes = 10000
		cl := dialSession(t, c)
		cl.cmd("a", "LOGIN bob pw")
		cl.cmd("b", "SELECT INBOX")
		cl.cmd("c", "FETCH "+strconv.Itoa(i+1)+" (BODY.PEEK[])")
		cls = append(cls, cl)
	}
	next := 9
	for i, cl := range cls {
		for k := 0; k < 8-i; k++ {
			if r := cl.cmd("d", "FETCH "+strconv.Itoa(next)+" (BODY.PEEK[])"); !strings.Contains(r, "d OK") {
				t.Fatalf("FETCH %d: %q", next, r)
			}
			next++
		}
	}
	var total int64
	ents, _ := os.ReadDir(dir + "/bob/cache")
	for _, e := range ents {
		if fi, err := e.Info(); err == nil && !strings.HasPrefix(e.Name(), ".") {
			total += fi.Size()
		}
	}
	if total > 10000+1100 { // the bound, and the message just fetched
		t.Errorf("imapcachebytes 10000, 8 sessions: the cache holds %d octets", total)
	}
}

// FuzzBodyStructure checks the bounded walker against the library's
// ExtractBodyStructure on messages within the walker's bounds (the
// library's cost on small inputs is no matter), and that it never
// describes deeper than maxNesting.
func FuzzBodyStructure(f *testing.F) {
	f.Add(nestedRFC822(3))
	f.Add(nestedMultipart(3))
	f.Add(nestedRFC822(maxNesting + 2))
	f.Add("Content-Type: multipart/mixed; boundary=o\r\n\r\n--o\r\nContent-Type: message/rfc822\r\n\r\nContent-Type: multipart/alternative; boundary=i\r\n\r\n--i\r\nContent-Type: text/html; charset=x\r\nContent-Language: en, de\r\n\r\n<p>\r\n--i--\r\n--o\r\nContent-Disposition: attachment; filename=a\r\n\r\nz\r\n--o--\r\n")
	f.Fuzz(func(t *testing.T, msg string) {
		got := bodyStructure([]byte(msg))
		if d := depth(got); d > maxNesting+1 {
			t.Fatalf("described %d levels deep", d)
		}
		want := mend(imapserver.ExtractBodyStructure(strings.NewReader(msg)))
		if depth(want) <= maxNesting && parts(want) <= maxParts && !reflect.DeepEqual(got, want) {
			t.Fatalf("structure\n%#v\nwant the library's\n%#v", got, want)
		}
	})
}

func depth(bs imap.BodyStructure) int {
	d := 0
	switch b := bs.(type) {
	case *imap.BodyStructureMultiPart:
		for _, c := range b.Children {
			d = max(d, depth(c))
		}
	case *imap.BodyStructureSinglePart:
		if b.MessageRFC822 != nil {
			d = depth(b.MessageRFC822.BodyStructure)
		}
	}
	return d + 1
}

func parts(bs imap.BodyStructure) int {
	n := 1
	switch b := bs.(type) {
	case *imap.BodyStructureMultiPart:
		for _, c := range b.Children {
			n += parts(c)
		}
	case *imap.BodyStructureSinglePart:
		if b.MessageRFC822 != nil {
			n += parts(b.MessageRFC822.BodyStructure)
		}
	}
	return n
}
