// Command im2000-agentd is a recipient notification agent's RNASP server:
// stores hand it notifications for the accounts it serves, and it keeps
// them until im2000-queryd gives them to the recipient. See
// man/im2000-agentd.8.
package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"im2000/lib/agent"
	"im2000/lib/conf"
	"im2000/lib/session"
	"im2000/lib/wire"
	"im2000/lib/wire/rnaqp"
	"im2000/lib/wire/rnasp"
)

const usage = `usage: im2000-agentd [-l addr:port] [-c n] [-t seconds] [-m bytes] [-tls]
  Serves RNASP for the agent spool in $IM2000_AGENT (or the agent file of
  the configuration directory $IM2000_CONF): one session on stdin/stdout,
  as under tcpserver, or with -l as a listener.
` + session.FlagUsage

type handler struct {
	spool   *agent.Spool
	rate    *agent.Rate
	domains map[string]bool
}

func main() {
	f := session.ParseFlags("im2000-agentd", usage, os.Args[1:])
	d := conf.FromEnv()
	// The handler in force: a listener's SIGHUP loads a new one, and each
	// session keeps the one it began with.
	srv := &session.Server{Proto: rnasp.Protocol, Log: logSession}
	err := session.RunReloading(srv, f, d, session.Reloading[*handler]{
		Load:       func() (*handler, session.Limits, error) { return load(d) },
		NewHandler: func(h *handler, _ *session.Session) session.Handler { return h },
		Settings:   func() { logSettings(d) },
		Failed:     logReloadFailed,
	})
	if err != nil {
		logFatal(err)
	}
}

// load reads every setting: at start, and again on a listener's SIGHUP.
func load(d conf.Dir) (*handler, session.Limits, error) {
	h, err := loadHandler(d)
	if err != nil {
		return nil, session.Limits{}, err
	}
	lim, err := session.ServerLimits(d, h.spool.Dir, rnasp.Protocol.Name)
	return h, lim, err
}

func loadHandler(d conf.Dir) (*handler, error) {
	dir, err := d.Agent()
	if err != nil {
		return nil, err
	}
	sync, err := d.Num("agentsync")
	if err != nil {
		return nil, err
	}
	spool, err := agent.Open(dir, sync != 0)
	if err != nil {
		return nil, err
	}
	rate := &agent.Rate{Dir: filepath.Join(dir, ".rate")}
	for _, v := range []struct {
		name string
		to   *int64
	}{
		{"agentquota", &spool.Limits.Count},
		{"agentquotabytes", &spool.Limits.Bytes},
		{"agentaddrquota", &spool.Limits.PerAddr},
		{"agentreserve", &spool.Limits.Reserve},
		{"agentreserveinodes", &spool.Limits.ReserveInodes},
		{"agentrate", &rate.PerMinute},
		{"agentburst", &rate.Burst},
	} {
		if *v.to, err = d.Num(v.name); err != nil {
			return nil, err
		}
		if *v.to < 0 {
			return nil, fmt.Errorf("%s is %d: write 0 or more (0: no limit)", d.Path(v.name), *v.to)
		}
	}
	if rate.PerMinute > 0 && rate.Burst == 0 {
		return nil, fmt.Errorf("%s is 0, so nothing could be accepted: write at least 1000 (a store's batch), or 0 in %s for no rate limit", d.Path("agentburst"), d.Path("agentrate"))
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
	h := &handler{spool: spool, rate: rate, domains: map[string]bool{}}
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
	now := time.Now()
	from := wire.ClientLocation{Addr: s.Remote.Addr(), Port: s.Remote.Port()}
	results := make([]uint64, len(c.Notifications))
	// Notifications that pass the checks, by account, in order.
	type kept struct {
		i int
		n *rnaqp.NotificationAndLocalData
	}
	var wanted []kept
	var accounts []string
	refused := 0
	for i := range c.Notifications {
		n := &rnaqp.NotificationAndLocalData{Notification: c.Notifications[i], Submitter: from, Date: uint64(now.Unix())}
		if err := agent.CheckSender(n.Notification.Sender); err != nil {
			logRefusedSender(s.Remote, err)
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
		if h.spool.Has(account, n) {
			// A re-send: kept already, and it costs no token, since stores
			// re-send until silenced.
			results[i] = rnasp.Accepted
			continue
		}
		wanted = append(wanted, kept{i, n})
		accounts = append(accounts, account)
	}
	if len(wanted) > 0 {
		// The submitter's rate first: what it is not granted is full, and
		// costs the spool nothing.
		granted, err := h.rate.Take(s.Remote.Addr(), int64(len(wanted)), now)
		if err != nil {
			logRateUnusable(s.Remote, session.AddrKey(s.Remote.Addr()), err)
			granted = 0
		}
		if over := len(wanted) - int(granted); over > 0 {
			logOverRate(s.Remote, session.AddrKey(s.Remote.Addr()), over)
			for _, k := range wanted[granted:] {
				results[k.i] = rnasp.Full
			}
			wanted, accounts = wanted[:granted], accounts[:granted]
		}
		room, err := h.spool.Room()
		if err != nil {
			logNoRoom(s.Remote, err)
			return session.Reply{Status: rnasp.ErrorInternalProblem}
		}
		// One lock of each account's counter per Notify.
		byAccount := map[string][]kept{}
		var order []string
		for j, k := range wanted {
			a := accounts[j]
			if byAccount[a] == nil {
				order = append(order, a)
			}
			byAccount[a] = append(byAccount[a], k)
		}
		for _, a := range order {
			ks := byAccount[a]
			ns := make([]*rnaqp.NotificationAndLocalData, len(ks))
			for j, k := range ks {
				ns[j] = k.n
			}
			errs := h.spool.PutAll(a, ns, room)
			fullHere := 0
			for j, err := range errs {
				switch {
				case err == nil:
					results[ks[j].i] = rnasp.Accepted
				case errors.Is(err, agent.ErrFull):
					results[ks[j].i] = rnasp.Full
					fullHere++
				default:
					// Nothing is lost: the store sends it again.
					logNotKept(s.Remote, a, err)
					return session.Reply{Status: rnasp.ErrorInternalProblem}
				}
			}
			if fullHere > 0 {
				logSpoolFull(s.Remote, a, fullHere)
			}
		}
	}
	full, accepted := 0, 0
	for _, r := range results {
		switch r {
		case rnasp.Full:
			full++
		case rnasp.Accepted:
			accepted++
		}
	}
	logNotify(s.Remote, len(results), accepted, full, refused)
	return session.Reply{Body: &rnasp.NotifyOK{Results: results}}
}
