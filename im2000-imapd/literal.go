package main

// Literals. A non-synchronizing one ({n+}, LITERAL-, which the library
// offers with IMAP4rev1 and cannot leave out) comes without waiting for
// the server's "+", and the library refuses some without reading them
// (over 4096 octets, over APPENDLIMIT in APPEND, after a syntax error
// earlier in the command) and then reads their octets as commands: a
// message a client saved to Sent with header lines "X-A: UID STORE 1:*
// +FLAGS (\Deleted)" and "X-B: EXPUNGE" expunged the whole INBOX (issue
// 19 review). literalGuard, between the connection and the library,
// follows the literals and sees the library's answers:
//   - a literal the library takes is passed on unscanned;
//   - a non-synchronizing literal whose command the library answered (a
//     tagged NO or BAD: it writes nothing when it takes one) before
//     reading on is read and discarded here. Only the answer with the
//     tag of the literal's command counts: with "c1 NOOP" pipelined
//     before it, "c1 OK" made the guard discard a literal the library
//     took, and the library then read the next command as the literal;
//     the next message saved to Sent ran as commands (issue 19, third
//     review). The guard keeps the tags of the commands the library has
//     not answered and follows the output's lines and literals (a body
//     may hold "c2 NO" at a line's start); a literal whose command's
//     tag it cannot tell apart (another open command has it, or it is
//     over maxTag) ends the input, as does a "+" it did not expect;
//   - one over maxLiteral (which the library never takes, and a LITERAL-
//     client never sends) ends the input: the library answers its
//     command and closes the session;
//   - so does a literal whose size the guard cannot read exactly (a "{"
//     beyond the tail it keeps, as with leading zeros, or an overflow):
//     it would follow another size than the library's (review r6);
//   - so does a second literal in APPEND: the library, not offering
//     MULTIAPPEND, returns from APPEND without an answer when no CRLF
//     follows the first, and would read the second's octets as commands;
//   - a line after a "+" the guard did not ask for (IDLE's, AUTHENTICATE's)
//     answers it and is no command: one announcing a literal ends the
//     input (the library refuses it and reads its octets as commands).
// APPENDLIMIT is maxLiteral as well, so the library itself reads (and
// APPEND refuses) every literal a LITERAL- client may send with APPEND.
//
// The guard sees the session's cleartext: under -tls it is above the
// TLS. After STARTTLS the library's TLS is above it and it only passes
// octets on; there APPENDLIMIT alone protects a LITERAL- client.

import (
	"bytes"
	"io"
	"math"
	"net"
	"strconv"
	"sync"
)

// maxLiteral is LITERAL-'s bound (RFC 7888), the largest literal the
// library takes in a command, and APPENDLIMIT.
const maxLiteral = 4096

type literalGuard struct {
	net.Conn
	// tls reports whether the library has put its STARTTLS above the
	// guard (nil before the session exists).
	tls func() bool

	mu       sync.Mutex // Write runs in IDLE's goroutine as well
	tail     []byte     // the end of the line being read, outside literals
	skip     int64      // octets of a literal the library takes, to pass on
	drop     int64      // octets of a refused literal, to discard
	dropLine bool       // discarding the rest of a refused command's line
	held     []byte     // what came after a literal's announcement
	waiting  bool       // a literal announced, until the library reads on or answers
	size     int64      // the waiting literal's
	nonSync  bool       // the waiting literal is non-synchronizing
	answer   bool       // the library answered the waiting literal's command
	cut      bool       // the input has ended (a literal over maxLiteral, or doubt)

	// The commands, to tell the answer to the waiting literal's command
	// from that of one pipelined before it (issue 19, third review).
	open    [][]byte // tags of the commands given to the library and not answered, oldest first
	tag     []byte   // the tag of the command being read: its first line up to a space
	tagEnd  bool     // a space ended tag
	cont    bool     // the line being read goes on with a command after a literal
	name    []byte   // the command's name: its first line's word after the tag, up to maxTag
	nameEnd bool     // a space (or "{") ended name
	append  bool     // the command being read is APPEND
	reply   bool     // the library wrote a "+" the guard did not ask for: the next line answers it
	doubt   bool     // the library wrote what the guard cannot place: end the input

	out outFollow // the library's output, line by line
}

// tailLen is how much of a line's end is kept: "{" and a size the
// library can parse, "+}", a space and CR.
const tailLen = 32

// maxTag is the longest tag the guard follows; a longer one with a
// literal ends the session (no client uses one).
const maxTag = 64

func (g *literalGuard) Write(b []byte) (int, error) {
	g.mu.Lock()
	g.out.follow(b, g.answered)
	g.mu.Unlock()
	return g.Conn.Write(b)
}

// answered takes a line the library wrote outside its literals (head is
// its start): a tagged one answers the oldest open command of its tag
// (the library runs commands one after another, so the ones before it
// were answered too); "+" asks for the waiting synchronizing literal.
func (g *literalGuard) answered(head []byte) {
	switch {
	case len(head) == 0 || head[0] == '*':
	case head[0] == '+':
		if g.waiting && !g.nonSync && string(head) == contReq {
			g.skip, g.waiting = g.size, false
		} else if g.waiting {
			g.doubt = true
		} else {
			g.reply = true
		}
	default:
		tag, _, _ := bytes.Cut(head, []byte(" "))
		for i, t := range g.open {
			if bytes.Equal(t, tag) {
				if g.waiting && i == len(g.open)-1 {
					g.answer = true
				}
				g.open = g.open[i+1:]
				break
			}
		}
	}
}

// contReq is the library's request for a synchronizing literal, up to
// its CR.
const contReq = "+ Ready for literal data\r"

func (g *literalGuard) Read(b []byte) (int, error) {
	if g.tls != nil && g.tls() {
		return g.Conn.Read(b)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.waiting {
		// The library reads on: a non-synchronizing literal it answered
		// is refused, the rest of its command with it.
		switch {
		case g.doubt:
			g.cut = true
		case g.nonSync && g.answer:
			g.drop, g.dropLine = g.size, true
		case g.nonSync:
			g.skip = g.size
		default: // a synchronizing literal not asked for: the client sends the next command
			g.cont = false
		}
		g.waiting, g.answer = false, false
	}
	for !g.cut {
		var n int
		var err error
		if len(g.held) > 0 {
			n = copy(b, g.held)
			g.held = g.held[n:]
		} else {
			g.mu.Unlock()
			n, err = g.Conn.Read(b)
			g.mu.Lock()
		}
		if n = g.scan(b[:n]); n > 0 || err != nil {
			return n, err
		}
	}
	return 0, io.EOF
}

// scan follows lines and literals in b, removes the octets to discard,
// and returns how many the library gets now: those up to a literal's
// announcement, the rest held until it is known whether the library
// takes the literal.
func (g *literalGuard) scan(b []byte) int {
	out := 0
	keep := func(p []byte) { out += copy(b[out:], p) }
	for i := 0; i < len(b); i++ {
		if g.skip > 0 || g.drop > 0 {
			k := int(min(g.skip+g.drop, int64(len(b)-i)))
			if g.skip > 0 {
				keep(b[i : i+k])
				g.skip -= int64(k)
			} else {
				g.drop -= int64(k)
			}
			i += k - 1
			continue
		}
		c := b[i]
		if c != '\n' {
			if len(g.tail) == tailLen {
				copy(g.tail, g.tail[1:])
				g.tail = g.tail[:tailLen-1]
			}
			g.tail = append(g.tail, c)
			if !g.cont && !g.tagEnd {
				if c == ' ' {
					g.tagEnd = true
				} else if len(g.tag) <= maxTag {
					g.tag = append(g.tag, c)
				}
			} else if !g.cont && !g.nameEnd {
				if c == ' ' || c == '{' || c == '\r' {
					g.nameEnd = true
				} else if len(g.name) <= maxTag {
					g.name = append(g.name, c)
				}
			}
			if !g.dropLine {
				keep(b[i : i+1])
			}
			continue
		}
		size, nonSync, ok := literalHeader(g.tail)
		g.tail = g.tail[:0]
		if ok && (size == inexact || nonSync && size > maxLiteral) {
			g.cut = true
			if !g.dropLine {
				keep(b[i : i+1])
			}
			return out
		}
		if g.dropLine { // the refused command goes on after a literal+
			if ok && nonSync {
				g.drop = size
			} else {
				g.dropLine, g.cont = false, false
			}
			continue
		}
		keep(b[i : i+1])
		if !g.cont && g.reply { // an answer to the library's "+", no command
			g.tag, g.tagEnd, g.name, g.nameEnd, g.reply = nil, false, nil, false, false
			if ok {
				g.cut = true
				return out
			}
			continue
		}
		if !g.cont { // a command's first line: the library will answer it
			g.open = append(g.open, bytes.TrimSuffix(g.tag, []byte("\r")))
			g.append = bytes.EqualFold(g.name, []byte("APPEND"))
			g.tag, g.tagEnd, g.name, g.nameEnd = nil, false, nil, false
		} else if ok && g.append { // MULTIAPPEND's shape: see the top
			g.cut = true
			return out
		}
		g.cont = ok
		if ok {
			if !g.placed() {
				g.cut = true
				return out
			}
			g.held = append(g.held[:0:0], b[i+1:]...)
			g.waiting, g.size, g.nonSync, g.answer, g.doubt = true, size, nonSync, false, false
			return out
		}
	}
	return out
}

// placed reports whether the library's answer to the command announcing
// a literal (the newest open) can be told from the others': its tag is
// one no other open command has, no longer than maxTag, and no response
// starts with it.
func (g *literalGuard) placed() bool {
	n := len(g.open)
	if n == 0 { // its command was answered: the guard has lost its place
		return false
	}
	tag := g.open[n-1]
	if len(tag) == 0 || len(tag) > maxTag || tag[0] == '+' || tag[0] == '*' {
		return false
	}
	for _, t := range g.open[:n-1] {
		if bytes.Equal(t, tag) {
			return false
		}
	}
	return true
}

// inexact is the size literalHeader gives a literal whose size it cannot
// read exactly; the guard ends the input on one.
const inexact = math.MaxInt64

// literalHeader parses the end of a line as the library does: "{n}" or
// "{n+}", then an optional space and CR before the LF. A size too long
// for the tail kept, or for an int64, is inexact.
func literalHeader(line []byte) (size int64, nonSync, ok bool) {
	full := len(line) == tailLen
	line = bytes.TrimSuffix(line, []byte("\r"))
	line = bytes.TrimSuffix(line, []byte(" "))
	if !bytes.HasSuffix(line, []byte("}")) {
		return 0, false, false
	}
	open := bytes.LastIndexByte(line, '{')
	if open < 0 && !full {
		return 0, false, false
	}
	num := line[open+1 : len(line)-1]
	num, nonSync = bytes.CutSuffix(num, []byte("+"))
	if len(num) == 0 || bytes.IndexFunc(num, func(r rune) bool { return r < '0' || r > '9' }) >= 0 {
		return 0, false, false
	}
	size, err := strconv.ParseInt(string(num), 10, 64)
	if err != nil || open < 0 {
		size = inexact
	}
	return size, nonSync, true
}
