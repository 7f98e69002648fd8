// Command im2000-agentd is a recipient notification agent's RNASP server:
// stores hand it notifications for the accounts it serves, and it keeps
// them until im2000-queryd gives them to the recipient. See
// man/im2000-agentd.8.
package main

import (
	"os"
	"strings"
	"time"

	"im2000/lib/agent"
	"im2000/lib/conf"
	"im2000/lib/fail"
	"im2000/lib/session"
	"im2000/lib/wire"
	"im2000/lib/wire/rnaqp"
	"im2000/lib/wire/rnasp"
)

const usage = `usage: im2000-agentd [-l addr:port] [-c n] [-t seconds] [-m bytes]
  Serves RNASP for the agent spool in $IM2000_AGENT (or the agent file of
  the configuration directory $IM2000_CONF): one session on stdin/stdout,
  as under tcpserver, or with -l as a listener.
` + session.FlagUsage

type handler struct {
	spool   *agent.Spool
	domains map[string]bool
}

func main() {
	f := session.ParseFlags("im2000-agentd", usage, os.Args[1:])
	d := conf.FromEnv()
	h, err := load(d)
	if err != nil {
		fail.Exit(fail.Temp(err))
	}
	srv := &session.Server{Proto: rnasp.Protocol, Log: fail.Warn,
		NewHandler: func(*session.Session) session.Handler { return h }}
	if srv.Limits, err = session.ServerLimits(d, h.spool.Dir, rnasp.Protocol.Name); err != nil {
		fail.Exit(fail.Temp(err))
	}
	if err := session.Run(srv, f); err != nil {
		fail.Exit(fail.Temp(err))
	}
}

func load(d conf.Dir) (*handler, error) {
	dir, err := d.Agent()
	if err != nil {
		return nil, err
	}
	sync, err := d.Int("agentsync", 0)
	if err != nil {
		return nil, err
	}
	spool, err := agent.Open(dir, sync != 0)
	if err != nil {
		return nil, err
	}
	me, err := d.Me()
	if err != nil {
		return nil, err
	}
	domains, err := d.Lines("domains")
	if err != nil {
		return nil, err
	}
	if domains == nil {
		domains = []string{me}
	}
	h := &handler{spool: spool, domains: map[string]bool{}}
	for _, dom := range domains {
		h.domains[strings.ToLower(dom)] = true
	}
	return h, nil
}

func (h *handler) Abort(*session.Session) {}

func (h *handler) Handle(s *session.Session, cmd wire.Body) session.Reply {
	c, ok := cmd.(*rnasp.Notify)
	if !ok {
		return session.Reply{Status: rnasp.ErrorUnexpectedCommand, ForceAbort: true}
	}
	now := uint64(time.Now().Unix())
	from := wire.ClientLocation{Addr: s.Remote.Addr(), Port: s.Remote.Port()}
	results := make([]uint64, len(c.Notifications))
	accepted, refused := 0, 0
	for i := range c.Notifications {
		n := &rnaqp.NotificationAndLocalData{Notification: c.Notifications[i], Submitter: from, Date: now}
		if err := agent.CheckSender(n.Notification.Sender); err != nil {
			fail.Warn("%v: refused: %v", s.Remote, err) // %q-quoted: no control character reaches the log
			results[i] = rnasp.Refused
			refused++
			continue
		}
		rcpt, err := n.Notification.Recipient.Addr()
		if err != nil || !h.domains[rcpt.Domain] {
			results[i] = rnasp.NoUser
			continue
		}
		account, ok := h.spool.Account(rcpt.Local)
		if !ok {
			results[i] = rnasp.NoUser
			continue
		}
		if err := h.spool.Put(account, n); err != nil {
			// Nothing is lost: the store sends it again.
			fail.Warn("%v: keeping a notification for %s: %v", s.Remote, rcpt, err)
			return session.Reply{Status: rnasp.ErrorInternalProblem}
		}
		accepted++
	}
	fail.Warn("%v: %d notifications, %d accepted, %d refused", s.Remote, len(results), accepted, refused)
	return session.Reply{Body: &rnasp.NotifyOK{Results: results}}
}
