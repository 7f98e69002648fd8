package main

import (
	"path/filepath"
	"strings"

	"im2000/lib/addr"
)

// A posting right over SMTP: none, one given to every sender ("smtp *"),
// or one given to the sender's address or domain (members only).
type postRight int

const (
	noRight postRight = iota
	openRight
	memberRight
)

// mayPost decides a post to a hosted list by its envelope sender: the
// lines of lists/NAME that start with "smtp" are the SMTP posting rights:
// "smtp *" (open), "smtp ADDRESS", "smtp @DOMAIN" (members). The other
// lines (local accounts, "*") are for authenticated accounts and grant
// nothing here. The null sender never posts.
func (c *config) mayPost(list string, from *addr.Mailbox, null bool) (postRight, error) {
	lines, err := c.conf.Lines(filepath.Join("lists", list))
	if err != nil {
		return noRight, err
	}
	right := noRight
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) != 2 || f[0] != "smtp" || null {
			continue
		}
		switch {
		case f[1] == "*":
			return openRight, nil
		case strings.HasPrefix(f[1], "@"):
			if strings.EqualFold(f[1][1:], from.Domain) {
				right = memberRight
			}
		default:
			if mb, err := addr.Parse(f[1]); err == nil && mb == *from {
				right = memberRight
			}
		}
	}
	return right, nil
}
