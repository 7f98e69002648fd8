package locate

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"im2000/lib/tlsconf"
)

// Dial connects to the first reachable server of service at domain: the
// TLS form first (_services._tcp, each target's certificate verified for
// domain, the name looked up), then the cleartext form, unless the domain
// must use TLS (tlsrequire, or reached over TLS before: then a cleartext
// offer is refused with tlsconf.ErrDowngrade). A TLS target whose
// certificate does not verify is never answered by cleartext: that is
// tlsconf.ErrBadCert (or ErrDowngrade where TLS is required). The
// connection is a *tls.Conn when it is TLS.
func (l *Locator) Dial(ctx context.Context, service, domain string) (net.Conn, error) {
	service = strings.ToLower(service)
	tlsName, clearName := SRVName(service+"s", domain), SRVName(service, domain)
	// routes overrides DNS for a service at a domain as a whole (qmail's
	// smtproutes): a domain routed in one form only is not looked up in
	// DNS for the other, so a routed private domain neither waits for a
	// resolver nor lets DNS add a server the admin did not name.
	_, routedTLS := l.Routes[tlsName]
	_, routedClear := l.Routes[clearName]
	// Both forms are asked at once, each with its own tries and budget, so
	// that a TLS question nobody answers does not spend the caller's time
	// before the cleartext one is even sent; the answers are then taken
	// exactly as if asked in turn: the TLS form's first.
	qctx, cancel := context.WithCancel(ctx)
	tlsAns := l.ask(qctx, service+"s", domain, routedTLS || !routedClear,
		fmt.Errorf("%w: %s is routed without its TLS form %s", ErrNoService, clearName, tlsName))
	clearCh := l.ask(qctx, service, domain, routedClear || !routedTLS,
		fmt.Errorf("%w: %s is routed without its cleartext form %s", ErrNoService, tlsName, clearName))
	clearAns := sync.OnceValue(func() srvAnswer { return <-clearCh })
	defer func() {
		cancel()
		clearAns() // no question outlives the dial
	}()
	ta := <-tlsAns
	tlsTargets, tlsErr := ta.targets, ta.err
	if ta.nx { // "no TLS form": the domain's existence is the cleartext form's question
		tlsErr = fmt.Errorf("%w: %s does not exist", ErrNoService, tlsName)
	}
	var errs []string
	certFailed := false
	for _, t := range tlsTargets {
		c, err := l.dialTLS(ctx, t, domain)
		if err == nil {
			if err := l.TLS.Reached(service, domain); err != nil && l.Log != nil {
				l.Log("cannot remember TLS: %s reached at %s over TLS, not recorded (check the tlsseen directory): %v", SRVName(service, domain), t, err)
			}
			return c, nil
		}
		certFailed = certFailed || tlsconf.CertError(err)
		errs = append(errs, err.Error())
	}
	ca := clearAns()
	clearTargets, clearErr := ca.targets, ca.err
	switch {
	case ca.nx && tlsTargets == nil:
		// Neither form has targets: only now is the domain asked whether
		// it exists, so a domain without TLS costs no more questions.
		clearErr = l.absent(ctx, service, domain)
	case ca.nx:
		clearErr = fmt.Errorf("%w: %s does not exist", ErrNoService, clearName)
	}
	if errors.Is(clearErr, ErrNoService) && tlsErr != nil && !errors.Is(tlsErr, ErrNoService) {
		// No service needs both forms shown absent: a TLS form whose
		// question went unanswered (a dropped datagram) or whose targets
		// have no address is not a domain without IM2000, and must not
		// send its mail to a smarthost.
		clearErr, tlsErr = fmt.Errorf("%w (and %v)", tlsErr, clearErr), nil
	}
	why, required := l.TLS.Required(service, domain)
	switch {
	case required && (certFailed || clearErr == nil):
		what := "offers only cleartext"
		if certFailed {
			what = "presented a certificate that does not verify"
		} else if len(errs) > 0 {
			what = "could not be reached over TLS (" + strings.Join(errs, "; ") + ") but offers cleartext"
		}
		return nil, fmt.Errorf("%w: %s %s, and %s", tlsconf.ErrDowngrade, domain, what, why)
	case certFailed:
		return nil, fmt.Errorf("%w for %s: %s", tlsconf.ErrBadCert, tlsName, strings.Join(errs, "; "))
	case clearErr != nil && tlsTargets != nil:
		return nil, fmt.Errorf("%w for %s: %s", ErrNoServer, tlsName, strings.Join(errs, "; "))
	case clearErr != nil && required && tlsErr != nil:
		return nil, fmt.Errorf("%w (%s, and %v)", clearErr, why, tlsErr)
	case clearErr != nil && required:
		return nil, fmt.Errorf("%w (%s)", clearErr, why)
	case clearErr != nil:
		return nil, clearErr
	}
	for _, t := range clearTargets {
		d := net.Dialer{Timeout: l.timeout()}
		c, err := d.DialContext(ctx, "tcp", t)
		if err == nil {
			return c, nil
		}
		errs = append(errs, err.Error())
	}
	return nil, fmt.Errorf("%w for %s: %s", ErrNoServer, clearName, strings.Join(errs, "; "))
}

// srvAnswer is what one SRV form's question came to (srvTargets).
type srvAnswer struct {
	targets []string
	nx      bool
	err     error
}

// ask starts the question of service at domain and answers on the channel
// it returns; when not asked (the other form alone is routed), notAsked is
// the answer at once.
func (l *Locator) ask(ctx context.Context, service, domain string, asked bool, notAsked error) <-chan srvAnswer {
	ch := make(chan srvAnswer, 1)
	if !asked {
		ch <- srvAnswer{err: notAsked}
		return ch
	}
	go func() {
		t, nx, err := l.srvTargets(ctx, service, domain)
		ch <- srvAnswer{t, nx, err}
	}()
	return ch
}

// DialTLS connects to addr (host:port) over TLS, and verifies that its
// certificate is valid for name: a store named by literal addresses in a
// notification's storessl is verified for the sender's domain, so that
// sender binding and TLS together authenticate the store. service at name
// is then remembered as reached over TLS.
func (l *Locator) DialTLS(ctx context.Context, service, addr, name string) (net.Conn, error) {
	c, err := l.dialTLS(ctx, addr, name)
	if err != nil {
		if tlsconf.CertError(err) {
			return nil, fmt.Errorf("%w: %s for %s: %v", tlsconf.ErrBadCert, addr, name, err)
		}
		return nil, err
	}
	if err := l.TLS.Reached(strings.ToLower(service), name); err != nil && l.Log != nil {
		l.Log("cannot remember TLS: %s reached at %s over TLS, not recorded (check the tlsseen directory): %v", SRVName(service, name), addr, err)
	}
	return c, nil
}

func (l *Locator) dialTLS(ctx context.Context, addr, name string) (net.Conn, error) {
	tc := l.TLS
	if tc == nil {
		tc = defaultTLS
	}
	ctx, cancel := context.WithTimeout(ctx, l.timeout())
	defer cancel()
	cfg, resuming := tc.ServerConfig(addr, name)
	c, err := l.handshake(ctx, addr, cfg)
	if err == nil && resuming && !c.ConnectionState().DidResume && c.ConnectionState().Version >= tls.VersionTLS13 {
		// The server declined the session, and this full handshake
		// offered only classical key exchange (tlsconf.ServerConfig):
		// not used, and the session that no longer resumes forgotten.
		c.Close()
		tc.Forget(addr, name)
		cfg, _ = tc.ServerConfig(addr, name)
		c, err = l.handshake(ctx, addr, cfg)
	}
	if err != nil {
		if resuming { // whatever failed, the next dial makes a full handshake
			tc.Forget(addr, name)
		}
		return nil, fmt.Errorf("%s: TLS: %w", addr, err)
	}
	return c, nil
}

func (l *Locator) handshake(ctx context.Context, addr string, cfg *tls.Config) (*tls.Conn, error) {
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: l.timeout()}, Config: cfg}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	tc, ok := c.(*tls.Conn)
	if !ok { // tls.Dialer documents a *tls.Conn
		c.Close()
		return nil, fmt.Errorf("crypto/tls dialed a %T", c)
	}
	return tc, nil
}

// defaultTLS is the TLS of a Locator made without FromConf: the system
// roots, no domain required, nothing remembered.
var defaultTLS = tlsconf.NewClient(nil, nil, nil)

// timeout is the Timeout, 5 s when unset.
func (l *Locator) timeout() time.Duration {
	if l.Timeout <= 0 {
		return 5 * time.Second
	}
	return l.Timeout
}
