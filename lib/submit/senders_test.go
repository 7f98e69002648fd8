package submit

import (
	"bufio"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"im2000/lib/conf"
	"im2000/lib/mailmsg"
)

func testSenders(t *testing.T, lines string) *Senders {
	t.Helper()
	d := t.TempDir()
	if lines != "" {
		os.Mkdir(filepath.Join(d, "senders"), 0o755)
		if err := os.WriteFile(filepath.Join(d, "senders", "alice"), []byte(lines), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s, err := LoadSenders(conf.Dir(d), "alice", "Example.ORG")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSendersCheck(t *testing.T) {
	s := testSenders(t, "# aliases\npostmaster@example.org\n@Lists.Example.org\n")
	cases := []struct {
		header string
		ok     bool
	}{
		{"Subject: no From\n", true},
		{"From: alice@example.org\n", true},
		{"From: \"Bank CEO\" <alice@EXAMPLE.org>\n", true}, // the name is not checked
		{"From: \"alice\"@example.org\n", true},
		{"From: postmaster@example.org\n", true},
		{"From: anyone@lists.example.org\n", true},
		{"From: =?utf-8?q?Al=C3=AFce?= <alice@example.org>\n", true},
		{"From: \"Bank CEO\" <ceo@bank.example>\n", false},
		{"From: Alice@example.org\n", false}, // another account's name
		{"From: alice@example.org.evil\n", false},
		{"From: x@sub.lists.example.org\n", false},
		{"From: alice@example.org, ceo@bank.example\nSender: alice@example.org\n", false},
		{"From: alice@example.org, postmaster@example.org\n", false}, // no Sender
		{"From: alice@example.org, postmaster@example.org\nSender: alice@example.org\n", true},
		{"From: alice@example.org\nSender: ceo@bank.example\n", false},
		{"From: alice@example.org\nSender: alice@example.org, postmaster@example.org\n", false},
		{"From: alice@example.org\nSender: alice@example.org\nSender: alice@example.org\n", false},
		{"From: alice@example.org\nFrom: ceo@bank.example\n", false},
		{"From: Bank CEO:;\n", false},
		{"From: <ceo@bank.example\n", false},
	}
	for _, c := range cases {
		m, err := mailmsg.Read(bufio.NewReader(strings.NewReader(c.header + "\nbody\n")))
		if err != nil {
			t.Fatalf("%q: %v", c.header, err)
		}
		err = s.Check(m.Header)
		if c.ok && err != nil || !c.ok && !errors.Is(err, ErrSender) {
			t.Errorf("%q: %v, want ok=%v", c.header, err, c.ok)
		}
		if err != nil && !strings.Contains(err.Error(), filepath.Join("senders", "alice")) && !strings.Contains(err.Error(), "add Sender: alice@example.org") {
			t.Errorf("%q: the refusal does not name the file: %v", c.header, err)
		}
	}
}

func TestSendersFile(t *testing.T) {
	d := t.TempDir()
	os.Mkdir(filepath.Join(d, "senders"), 0o755)
	os.WriteFile(filepath.Join(d, "senders", "alice"), []byte("not an address\n"), 0o644)
	if _, err := LoadSenders(conf.Dir(d), "alice", "example.org"); err == nil || !strings.Contains(err.Error(), "senders/alice") {
		t.Errorf("a bad line: %v", err)
	}
	if s, err := LoadSenders(conf.Dir(d), "../senders/alice", "example.org"); err == nil && len(s.addrs) != 1 {
		t.Errorf("a path as account read %v", s.addrs)
	}
}

// TestCheckRaw: what submitd stores as it is sent is read the way the most
// trusting reader would read it.
func TestCheckRaw(t *testing.T) {
	s := testSenders(t, "")
	cases := []struct {
		msg string
		ok  bool
	}{
		{"x", true},
		{"hello world\r\n", true},
		{"qqqqqqqqqq", true},
		{"Subject: ok\r\n\r\nFrom: ceo@bank.example\r\n", true}, // in the body
		{"From: alice@example.org\r\nSubject: ok\r\n\r\nbody\r\n", true},
		{"From: alice@example.org\nSubject: ok\n\nbody\n", true},
		{"\r\nFrom: ceo@bank.example\r\n", true}, // no header at all
		{"From: ceo@bank.example\r\n\r\nbody\r\n", false},
		{"From: ceo@bank.example", false},
		{"hello\r\nFrom: ceo@bank.example\r\n\r\nbody\r\n", false},
		{"Subject: x\r\nnot a field\r\nFROM : ceo@bank.example\r\n\r\n", false},
		{"From: alice@example.org\r\nSender:\r\n ceo@bank.example\r\n\r\n", false},
		{"Subject: x\rFrom: ceo@bank.example\r\n\r\n", false},
		{"From: alice@example.org\r\n\r\n\rbody", true},
	}
	for _, c := range cases {
		for _, size := range []int{1, 2, 3, 7, 1 << 20} {
			var h Head
			for i := 0; i < len(c.msg); i += size {
				h.Write([]byte(c.msg[i:min(i+size, len(c.msg))]))
			}
			section, err := h.Section()
			if err == nil {
				err = s.CheckRaw(section)
			}
			if c.ok && err != nil || !c.ok && !errors.Is(err, ErrSender) {
				t.Errorf("%q in pieces of %d: %v, want ok=%v", c.msg, size, err, c.ok)
			}
		}
	}
	var h Head
	h.Write([]byte(strings.Repeat("Subject: long\r\n", 69000) + "\r\nbody"))
	if _, err := h.Section(); err != nil {
		t.Errorf("a header of about 1 MiB: %v", err)
	}
	h = Head{}
	for i := 0; i < 100; i++ {
		h.Write([]byte(strings.Repeat("z", 20000)))
	}
	if _, err := h.Section(); !errors.Is(err, ErrSender) {
		t.Errorf("2 MB without an empty line: %v", err)
	}
}
