package main

import (
	"bytes"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"

	"im2000/lib/agent"
)

// wholeStore serves the whole message when asked for its header only, as
// a hostile store may (and lib/trace passes on what follows the blank
// line).
type wholeStore struct{ *memory }

func (h wholeStore) RetrieveTo(e agent.Entry, kind uint64, w io.Writer) (int64, error) {
	n, err := io.WriteString(w, messages[num(e)-1])
	return int64(n), err
}

func TestHeaderCut(t *testing.T) {
	for in, want := range map[string]string{
		"A: 1\r\nB: 2\r\n\r\nBODY\r\n\r\nC: 3\r\n": "A: 1\r\nB: 2\r\n",
		"A: 1\nB: 2\n\nBODY\n":                     "A: 1\nB: 2\n",
		"A: 1\r\n":                                 "A: 1\r\n",
		"\r\nBODY\r\n":                             "",
		"A: 1\r\n\rX: 2\r\n\r\nBODY":               "A: 1\r\n\rX: 2\r\n",
	} {
		for _, step := range []int{1, 2, 3, len(in)} {
			var out bytes.Buffer
			hc := &headerCut{w: &out, start: true}
			for i := 0; i < len(in); i += step {
				if n, err := hc.Write([]byte(in[i:min(i+step, len(in))])); err != nil || n != min(step, len(in)-i) {
					t.Fatalf("%q: Write: %d, %v", in, n, err)
				}
			}
			if out.String() != want || hc.n != int64(len(want)) {
				t.Errorf("%q in writes of %d: %q (%d), want %q", in, step, out.String(), hc.n, want)
			}
		}
	}
}

// A hostile store's headersonly answer holding a body of nested
// message/rfc822 parts (issue 19, third review): FETCH BODYSTRUCTURE ran
// the library's ExtractBodyStructure on it, 384 MiB for 100 KB,
// quadratic (1 MB: the process). The header is cut at its end and the
// bounded walker describes the whole message.
func TestHostileHeadersOnly(t *testing.T) {
	durableWrites = false
	top := "Subject: nest\r\nContent-Type: message/rfc822\r\n\r\n" + strings.Repeat("Content-Type: message/rfc822\r\n\r\n", 3200) + "Subject: x\r\n\r\nhello\r\n"
	withMessages(t, []string{top, nestedRFC822(6400), "Subject: plain\r\n\r\nBODY-LINE\r\n"})
	cl := dialSession(t, testConfig(t.TempDir(), wholeStore{newMemory()}, time.Hour))
	cl.cmd("a", "LOGIN bob pw")
	cl.cmd("b", "SELECT INBOX")
	for _, seq := range []string{"1", "2"} {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		r := cl.cmd("c", "FETCH "+seq+" (BODYSTRUCTURE)")
		runtime.ReadMemStats(&after)
		if !strings.Contains(r, "c OK") {
			t.Errorf("FETCH %s BODYSTRUCTURE: %q", seq, r)
		}
		if mib := (after.TotalAlloc - before.TotalAlloc) >> 20; mib > 32 {
			t.Errorf("FETCH %s BODYSTRUCTURE allocated %d MiB", seq, mib)
		}
	}
	if r := cl.cmd("d", "FETCH 3 (BODY.PEEK[HEADER] ENVELOPE)"); !strings.Contains(r, "d OK") || strings.Contains(r, "BODY-LINE") {
		t.Errorf("a header with the body a store sent after it: %q", r)
	}
}

// One FETCH of many deep sections walked the whole message once per
// section per level (780 BINARY.SIZE sections 25 deep: 4 s for 1 MiB;
// issue 19, third review): their levels are bounded, and a section
// deeper than BODYSTRUCTURE tells is refused.
func TestManyDeepSections(t *testing.T) {
	durableWrites = false
	withMessages(t, []string{nestedMultipart(maxNesting)})
	cl := dialSession(t, testConfig(t.TempDir(), newMemory(), time.Hour))
	cl.cmd("a", "LOGIN bob pw")
	cl.cmd("b", "SELECT INBOX")
	deep := strings.TrimSuffix(strings.Repeat("1.", maxNesting+1), ".")
	for items, want := range map[string]string{
		strings.Repeat("BINARY.SIZE["+deep+"] ", 780) + "UID":  "c NO [LIMIT]",
		strings.Repeat("BODY.PEEK[1.MIME] ", 130) + "UID":      "c NO [LIMIT]",
		strings.Repeat("BODY.PEEK[1.MIME] ", 120) + "UID":      "c OK",
		"BINARY.SIZE[" + deep + "] BODY.PEEK[" + deep + "]":    "c OK",
		"BODY.PEEK[1.MIME] BODY.PEEK[1] BODY.PEEK[HEADER] UID": "c OK",
		"BODY.PEEK[" + deep + ".1]":                            "c NO [CANNOT]",
	} {
		if r := cl.cmd("c", "FETCH 1 ("+items+")"); !strings.Contains(r, want) {
			t.Errorf("FETCH of %.60q...: %q, want %q", items, r[max(0, len(r)-200):], want)
		}
	}
}
