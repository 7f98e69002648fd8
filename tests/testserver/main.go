// Command testserver is a minimal RNASP server built on lib/session, for
// testing and measuring the session engine under tcpserver and in listener
// mode before the real servers exist. It accepts every notification except
// those for the local part "nobody" (nouser), and keeps nothing.
//
// Usage: testserver [-l ADDR:PORT] [-c N] [-t SECONDS] [-m BYTES]
package main

import (
	"flag"
	"fmt"
	"os"

	"im2000/lib/fail"
	"im2000/lib/session"
	"im2000/lib/wire"
	"im2000/lib/wire/rnasp"
)

type handler struct{}

func (handler) Handle(s *session.Session, cmd wire.Body) session.Reply {
	n, ok := cmd.(*rnasp.Notify)
	if !ok {
		return session.Reply{Status: rnasp.ErrorUnexpectedCommand, ForceAbort: true}
	}
	results := make([]uint64, len(n.Notifications))
	for i, x := range n.Notifications {
		if x.Recipient.Local == "nobody" {
			results[i] = rnasp.NoUser
		}
	}
	return session.Reply{Body: &rnasp.NotifyOK{Results: results}}
}

func (handler) Abort(*session.Session) {}

func main() {
	var f session.Flags
	fs := flag.NewFlagSet("testserver", flag.ExitOnError)
	f.Register(fs)
	fs.Parse(os.Args[1:])
	srv := &session.Server{Proto: rnasp.Protocol, NewHandler: func(s *session.Session) session.Handler {
		fmt.Fprintf(os.Stderr, "testserver: session from %v\n", s.Remote)
		return handler{}
	}, Log: func(format string, a ...any) { fail.Warn(format, a...) }}
	if err := session.Run(srv, f); err != nil {
		fail.Exit(fail.Temp(err))
	}
}
