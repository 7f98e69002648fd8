package trace

import (
	"bufio"
	"bytes"
	"strings"

	"im2000/lib/addr"
)

// An SMTP gateway (im2000-gatewayd) commits mail from the SMTP world into
// its own account's archive, so the verified sender of such mail is the
// gateway account. It writes the SMTP envelope sender as the message's
// first line, "Return-Path: <sender>". A reader believes that line only
// when the verified sender is a gateway it trusts (Stamp.Gateway; lib/inbox
// decides from the gateways setting), and only the first line: anyone
// else's Return-Path, like every Return-Path, is removed by Write.

// maxViaLine bounds the first line read for the envelope sender: a
// Return-Path field with the longest address (RFC 5321: 64 + 1 + 255)
// and room for quoting.
const maxViaLine = 1024

// viaSMTP reads the envelope sender from the first line of a message
// from a trusted gateway, without consuming it: "<address>", "<>" for the
// null sender, or "" when the first line is not a Return-Path with an
// address (then Received says nothing of SMTP).
func viaSMTP(br *bufio.Reader) string {
	b, _ := br.Peek(maxViaLine)
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return ""
	}
	name, value, ok := strings.Cut(strings.TrimRight(string(b[:i]), "\r"), ":")
	if !ok || !strings.EqualFold(name, "Return-Path") {
		return ""
	}
	value = strings.TrimSpace(value)
	inner, ok := strings.CutPrefix(value, "<")
	if inner, ok = strings.CutSuffix(inner, ">"); !ok {
		return ""
	}
	if inner == "" {
		return "<>"
	}
	mb, err := addr.Parse(inner)
	if err != nil {
		return ""
	}
	return "<" + mb.String() + ">"
}

// viaComment is the Received field's " (via SMTP from <sender>)", the
// sender escaped for one line and as a comment's text (RFC 5322
// quoted-pairs for parentheses; Escape writes a backslash as a quoted-pair).
func (s Stamp) viaComment() string {
	if s.via == "" {
		return ""
	}
	v := strings.NewReplacer("(", `\(`, ")", `\)`).Replace(Escape(s.via)) // Escape doubles backslashes: quoted-pairs already
	return " (via SMTP from " + v + ")"
}
