package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"im2000/lib/addr"
	"im2000/lib/agent"
	"im2000/lib/conf"
	"im2000/lib/session"
	"im2000/lib/store"
	"im2000/lib/tlsconf"
)

type config struct {
	conf       conf.Dir
	me         string
	account    string       // the gateway account: whose archive inbound mail goes into
	postmaster string       // the account postmaster@ each domain goes to; "": an account named postmaster
	sender     addr.Mailbox // account@me, the sender of every notification
	domains    map[string]bool
	spool      *agent.Spool // who the host's accounts are
	root       string       // the store
	maxMessage int64
	maxRcpt    int
	quota      int64
	share      *agent.Rate // octets per client address (gatewayshare, share.go); nil: no limit
	sharePct   int64
	lifetime   time.Duration
	limits     session.Limits
	certs      *tlsconf.Certs // nil: no certificate, no STARTTLS
	tls        *tls.Config    // certs' configuration, one per pair (its session ticket keys)
	dns        *resolver
}

// load reads every setting gatewayd uses: at start (prev nil), and with -l
// on each SIGHUP, prev being the settings in force then.
func load(d conf.Dir, prev *config) (*config, error) {
	local, err := d.Local()
	if err != nil {
		return nil, err
	}
	c := &config{conf: d, me: local.Me, maxMessage: local.MaxMessage, quota: local.Quota, lifetime: local.Lifetime}
	if c.maxMessage <= 0 {
		// 0 is not "no limit" for every program (the readers would
		// retrieve nothing), and the gateway bounds its spool by it.
		return nil, fmt.Errorf("%s is %d: write the largest message the gateway takes, in octets (at least 1; default 16777216)", d.Path("databytes"), c.maxMessage)
	}
	if c.account, err = d.Str("gatewayaccount"); err != nil {
		return nil, err
	}
	if err := store.CheckAccount(c.account); err != nil {
		return nil, fmt.Errorf("%s: %v: write an account name (letters, digits, . _ -)", d.Path("gatewayaccount"), err)
	}
	if c.sender, err = addr.Parse(c.account + "@" + c.me); err != nil {
		return nil, fmt.Errorf("the gateway account %s at %s is not a valid address: %v", c.account, c.me, err)
	}
	if c.postmaster, err = d.Str("postmaster"); err != nil {
		return nil, err
	}
	if c.postmaster != "" {
		if err := store.CheckAccount(c.postmaster); err != nil {
			return nil, fmt.Errorf("%s: %v: write an account name (letters, digits, . _ -)", d.Path("postmaster"), err)
		}
	}
	domains, err := d.Lines("domains")
	if err != nil {
		return nil, err
	}
	if domains == nil {
		domains = []string{c.me}
	}
	c.domains = map[string]bool{}
	for _, dom := range domains {
		c.domains[strings.ToLower(strings.TrimSuffix(dom, "."))] = true
	}
	spool, err := d.Agent()
	if err != nil {
		return nil, fmt.Errorf("%v: the gateway takes mail for the accounts of the agent's spool, so it runs on the agent's host", err)
	}
	// Open makes .tmp and .count, as agentd does; a gateway that cannot
	// is on the wrong host.
	if c.spool, err = agent.Open(spool, false); err != nil {
		return nil, err
	}
	if c.root, err = d.Store(); err != nil {
		return nil, err
	}
	if c.maxRcpt, err = store.MaxRcpt(d); err != nil {
		return nil, err
	}
	if err := c.loadShare(d); err != nil {
		return nil, err
	}
	if c.limits, err = session.LimitsFromConf(d, sessionsDir(c.root)); err != nil {
		return nil, err
	}
	if err := c.loadTLS(d, prev); err != nil {
		return nil, err
	}
	timeout, err := session.ClientTimeout(d)
	if err != nil {
		return nil, err
	}
	resolvers, err := d.Lines("resolvers")
	if err != nil {
		return nil, err
	}
	c.dns = newResolver(resolvers, timeout)
	return c, nil
}

// loadTLS reads tlscert and tlskey and the pair they name. On SIGHUP the
// pair in force, if they still name its files, is read again and kept
// (lib/tlsconf keeps the one in use, logged, if the new one does not
// load; the clients' session tickets still resume); other files are
// loaded as at start, and a pair that does not load leaves every setting
// as it was.
func (c *config) loadTLS(d conf.Dir, prev *config) error {
	if prev != nil && prev.certs != nil && samePair(d, prev.certs) {
		if err := prev.certs.Reload(true); err == nil {
			logTLS("tls: SIGHUP: certificate of %s loaded", prev.certs.CertFile)
		}
		c.certs, c.tls = prev.certs, prev.tls
		return nil
	}
	certs, err := tlsconf.Load(d, logTLS)
	switch {
	case errors.Is(err, tlsconf.ErrNoCert):
		return nil
	case err != nil:
		return err
	}
	c.certs, c.tls = certs, certs.Config()
	return nil
}

// samePair says whether tlscert and tlskey name the files of certs (taken
// from d when relative, as lib/tlsconf takes them).
func samePair(d conf.Dir, certs *tlsconf.Certs) bool {
	path := func(name string) string {
		p, err := d.Str(name)
		if err != nil || p == "" {
			return ""
		}
		if !filepath.IsAbs(p) {
			p = d.Path(p)
		}
		return p
	}
	return path(tlsconf.SettingCert) == certs.CertFile && path(tlsconf.SettingKey) == certs.KeyFile
}

// listPath is where a hosted list's settings are.
func (c *config) listPath(name string) string { return c.conf.Path(filepath.Join("lists", name)) }
