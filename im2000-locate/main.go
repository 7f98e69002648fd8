// Command im2000-locate shows an admin what the IM2000 location algorithm
// finds for a domain: for each of the four services and their TLS forms,
// whether a routes entry or DNS SRV records say where it is, the servers
// in the order they are tried with their addresses, and whether each
// answers in its protocol. See man/im2000-locate.8.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"im2000/lib/conf"
	"im2000/lib/fail"
	"im2000/lib/locate"
	"im2000/lib/session"
	"im2000/lib/wire"
	"im2000/lib/wire/msoap"
	"im2000/lib/wire/msrap"
	"im2000/lib/wire/rnaqp"
	"im2000/lib/wire/rnasp"
)

const usage = `usage: im2000-locate [-n] [-s service] [-t seconds] domain
  Shows where the IM2000 services of domain are, as stores and readers find
  them (the routes and resolvers files of $IM2000_CONF, else DNS SRV), and
  whether each server answers. Exit 0 when every service has a server that
  answers, 100 when the domain does not exist, 111 otherwise.
  -n          look up only: connect to nothing
  -s service  only this service: msoap, msrap, rnasp or rnaqp (repeatable)
  -t seconds  the time each DNS question, connection and answer may take (default 5)
  -h          show this help`

// services are the four, with what each is for and the harmless command
// that makes a server answer: before authentication, or for nothing.
var services = []struct {
	name, what string
	proto      *wire.Protocol
	probe      wire.Body
}{
	{"msoap", "originators submit and track", msoap.Protocol, &msoap.Track{}},
	{"msrap", "recipients retrieve", msrap.Protocol, &msrap.QuerySize{}},
	{"rnasp", "stores notify the agent", rnasp.Protocol, &rnasp.Notify{}},
	{"rnaqp", "recipients ask the agent", rnaqp.Protocol, &rnaqp.RetrieveAndClear{}},
}

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = append(*l, strings.ToLower(s)); return nil }

func main() {
	fs := flag.NewFlagSet("im2000-locate", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	lookOnly := fs.Bool("n", false, "")
	secs := fs.Int("t", 5, "")
	var only listFlag
	fs.Var(&only, "s", "")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Println(usage)
			os.Exit(0)
		}
		fail.Usage("%v\n%s", err, usage)
	}
	if fs.NArg() != 1 {
		fail.Usage("name one domain\n%s", usage)
	}
	if *secs < 1 {
		fail.Usage("-t: at least 1 second\n%s", usage)
	}
	domain := strings.ToLower(strings.TrimSuffix(fs.Arg(0), "."))
	if _, err := wire.ParseLocation(domain); err != nil || strings.Contains(domain, ":") {
		fail.Usage("%q is not a domain name\n%s", fs.Arg(0), usage)
	}
	known := map[string]bool{}
	for _, s := range services {
		known[s.name] = true
	}
	for _, s := range only {
		if !known[s] {
			fail.Usage("-s %s: the services are msoap, msrap, rnasp and rnaqp\n%s", s, usage)
		}
	}
	l, err := locate.FromConf(conf.FromEnv())
	if err != nil {
		fail.Exit(fail.Temp(err))
	}
	l.Timeout = time.Duration(*secs) * time.Second
	r := &run{loc: l, domain: domain, probe: !*lookOnly}
	var todo []int
	for i, s := range services {
		if len(only) == 0 || contains(only, s.name) {
			todo = append(todo, i)
		}
	}
	fail.Exit(r.all(todo))
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// run is one look at a domain.
type run struct {
	loc    *locate.Locator
	domain string
	probe  bool
}

// form is what one SRV name (a service in one form) came to.
type form struct {
	text   strings.Builder
	usable bool  // a server answered (or, looking up only, has an address)
	err    error // the lookup's failure
}

// all looks up every service in both forms at once, so that the whole
// run takes about as long as its slowest lookup and connection, prints
// them in order, and says what it all comes to.
func (r *run) all(todo []int) error {
	forms := make([][2]*form, len(services))
	var wg sync.WaitGroup
	for _, i := range todo {
		for j, secure := range []bool{true, false} {
			f := &form{}
			forms[i][j] = f
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer fail.Recover("locating " + services[i].name)
				r.one(f, i, secure)
			}()
		}
	}
	wg.Wait()
	var missing []string
	bad := false
	for _, i := range todo {
		s := services[i]
		fmt.Printf("%s (%s):\n", s.name, s.what)
		ok := false
		for _, f := range forms[i] {
			if f == nil {
				continue // a recovered panic: nothing to show
			}
			fmt.Print(f.text.String())
			ok = ok || f.usable
			bad = bad || errors.Is(f.err, locate.ErrBadDomain)
		}
		if !ok {
			missing = append(missing, s.name)
		}
	}
	switch {
	case bad:
		return fail.Perm(fmt.Errorf("%s: %w (baddomain: mail to it fails for good)", r.domain, locate.ErrBadDomain))
	case len(missing) > 0 && r.probe:
		return fail.Temp(fmt.Errorf("%s: no server answers for %s (noservice or noserver: mail to it waits)", r.domain, strings.Join(missing, ", ")))
	case len(missing) > 0:
		return fail.Temp(fmt.Errorf("%s: no server with an address for %s (noservice or noserver: mail to it waits)", r.domain, strings.Join(missing, ", ")))
	}
	return nil
}

// one locates service i in one form and tries each server.
func (r *run) one(f *form, i int, secure bool) {
	s := services[i]
	name := s.name
	if secure {
		name += "s"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*r.loc.Timeout)
	defer cancel()
	found, err := r.loc.Explain(ctx, name, r.domain)
	label := locate.SRVName(name, r.domain)
	kind := "cleartext"
	if secure {
		kind = "TLS"
	}
	if err != nil {
		f.err = err
		fmt.Fprintf(&f.text, "  %s (%s): %v\n", label, kind, kindOf(err))
		return
	}
	from := "DNS"
	if found.FromRoutes {
		from = "routes file"
	}
	fmt.Fprintf(&f.text, "  %s (%s, from the %s):\n", label, kind, from)
	for _, sv := range found.Servers {
		head := "    " + sv.Target
		if !found.FromRoutes {
			head = fmt.Sprintf("    priority %d weight %d port %d %s", sv.Priority, sv.Weight, sv.Port, sv.Target)
		}
		if sv.Err != nil {
			fmt.Fprintf(&f.text, "%s: no address (%v)\n", head, sv.Err)
			continue
		}
		for _, a := range sv.Addrs {
			if !r.probe {
				fmt.Fprintf(&f.text, "%s %s\n", head, a)
				f.usable = true
				continue
			}
			what, ok := r.try(ctx, s.proto, s.probe, a, secure)
			fmt.Fprintf(&f.text, "%s %s: %s\n", head, a, what)
			f.usable = f.usable || ok
		}
	}
}

// kindOf names a failure as the store records it, with why.
func kindOf(err error) string {
	switch {
	case errors.Is(err, locate.ErrBadDomain):
		return "baddomain (permanent): " + err.Error()
	case errors.Is(err, locate.ErrNoService):
		return "noservice (temporary): " + err.Error()
	case errors.Is(err, locate.ErrNoServer):
		return "noserver (temporary): " + err.Error()
	case errors.Is(err, locate.ErrNoAnswer):
		return "noservice (temporary, DNS did not answer): " + err.Error()
	}
	return "temporary: " + err.Error()
}

// try connects to addr, for TLS verifies the certificate for the domain
// (the name looked up, as stores and readers verify it), and sends a
// command that changes nothing; any answer in the protocol, whatever its
// status, shows that an IM2000 server of that protocol is there.
func (r *run) try(ctx context.Context, p *wire.Protocol, probe wire.Body, addr string, secure bool) (string, bool) {
	start := time.Now()
	d := net.Dialer{Timeout: r.loc.Timeout}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Sprintf("does not answer (noserver): %v", err), false
	}
	defer c.Close()
	tlsNote := ""
	if secure {
		tc := tls.Client(c, r.loc.TLS.Config(r.domain))
		c.SetDeadline(time.Now().Add(r.loc.Timeout))
		if err := tc.HandshakeContext(ctx); err != nil {
			return fmt.Sprintf("TLS handshake failed: %v", err), false
		}
		st := tc.ConnectionState()
		tlsNote = fmt.Sprintf(", %s, certificate verified for %s", tls.VersionName(st.Version), r.domain)
		c = tc
	}
	cl := session.NewClient(c, p, r.loc.Timeout)
	pdu, err := cl.Call(probe)
	if pdu == nil {
		return fmt.Sprintf("connects, but does not answer in %s: %v", p.Name, err), false
	}
	return fmt.Sprintf("answers in %s (%s) in %v%s", p.Name, p.StatusName(pdu.Status), time.Since(start).Round(time.Millisecond), tlsNote), true
}
