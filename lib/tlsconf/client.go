package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"im2000/lib/conf"
	"im2000/lib/durable"
)

// The settings of the client side.
const (
	SettingCA      = "tlsca"      // path of PEM CA certificates trusted besides the system's
	SettingRequire = "tlsrequire" // domains that must be reached over TLS
	SettingSeen    = "tlsseen"    // directory remembering the domains reached over TLS
)

var (
	// ErrDowngrade is a domain that must be reached over TLS (tlsrequire,
	// or reached over TLS before) that offered only cleartext, or a
	// certificate that does not verify. Temporary: the attack, or the
	// misconfiguration, may end.
	ErrDowngrade = errors.New("TLS downgrade refused")
	// ErrBadCert is a TLS form whose certificate does not verify for the
	// name looked up, at a domain not yet known to speak TLS. Temporary;
	// never answered by falling back to cleartext.
	ErrBadCert = errors.New("certificate not verified")
)

// Client is the TLS of a client program: whom it trusts, which domains
// must be reached over TLS, and the domains remembered as reached over TLS.
// One per process, so that its session cache lets sessions resume.
type Client struct {
	roots   *x509.CertPool // the system roots plus tlsca; nil: the system's alone
	require map[string]bool
	seen    *Tracker
	cache   tls.ClientSessionCache
}

// NewClient is a client that trusts roots (nil: the system's), requires
// TLS of the domains in require, and remembers in seen (nil: nothing).
func NewClient(roots *x509.CertPool, require []string, seen *Tracker) *Client {
	c := &Client{roots: roots, require: map[string]bool{}, seen: seen, cache: tls.NewLRUClientSessionCache(256)}
	for _, d := range require {
		c.require[canonDomain(d)] = true
	}
	return c
}

// LoadClient reads tlsca, tlsrequire and tlsseen from a config directory.
// tlsseen defaults to the directory "tlsdomains" in the config directory; a
// relative path is taken from the config directory.
func LoadClient(d conf.Dir) (*Client, error) {
	var roots *x509.CertPool
	ca, err := d.Str(SettingCA)
	if err != nil {
		return nil, err
	}
	if ca != "" {
		if !filepath.IsAbs(ca) {
			ca = d.Path(ca)
		}
		if roots, err = x509.SystemCertPool(); err != nil || roots == nil {
			roots = x509.NewCertPool()
		}
		pem, err := os.ReadFile(ca)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", d.Path(SettingCA), err)
		}
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s: %s holds no PEM certificate", d.Path(SettingCA), ca)
		}
	}
	require, err := d.Lines(SettingRequire)
	if err != nil {
		return nil, err
	}
	dir, err := d.Str(SettingSeen)
	if err != nil {
		return nil, err
	}
	if !filepath.IsAbs(dir) {
		dir = d.Path(dir)
	}
	return NewClient(roots, require, &Tracker{Dir: dir}), nil
}

// Config is the configuration of a connection that must present a
// certificate valid for name (a DNS name or an address).
func (c *Client) Config(name string) *tls.Config {
	return &tls.Config{RootCAs: c.roots, ServerName: strings.TrimSuffix(name, "."), MinVersion: MinVersion, ClientSessionCache: c.cache}
}

// ServerConfig is Config for a connection to the server at addr. Its
// sessions are cached for that server alone (a ticket is offered only to
// the server that issued it: another server of the same domain could not
// take it, and would learn that the client was here before). resuming
// says that a session is cached: the handshake then offers only classical
// key exchange (X25519 first), sparing the post-quantum hybrid's keys,
// about a quarter of a resumed session's cost. Its secrets still rest on
// the hybrid: TLS 1.3 resumption mixes the session's secret, made by the
// full handshake, into the keys. A server that declines the session (its
// ticket keys changed, the ticket expired) makes a full handshake without
// the hybrid: the caller must not use that connection, but Forget the
// session and dial again with the full configuration (resuming false).
func (c *Client) ServerConfig(addr, name string) (cfg *tls.Config, resuming bool) {
	cfg = c.Config(name)
	cache := serverCache{c.cache, addr + " "}
	cfg.ClientSessionCache = cache
	if _, ok := cache.Get(cfg.ServerName); ok {
		cfg.CurvePreferences = classical
		return cfg, true
	}
	return cfg, false
}

// Forget drops the session cached for the server at addr under name.
func (c *Client) Forget(addr, name string) {
	serverCache{c.cache, addr + " "}.Put(strings.TrimSuffix(name, "."), nil)
}

// classical is the key exchange of a resumed handshake: crypto/tls's
// classical groups, X25519 preferred.
var classical = []tls.CurveID{tls.X25519, tls.CurveP256, tls.CurveP384, tls.CurveP521}

// serverCache is the Client's session cache seen by one server's
// connections: crypto/tls keys sessions by server name alone.
type serverCache struct {
	tls.ClientSessionCache
	prefix string
}

func (s serverCache) Get(key string) (*tls.ClientSessionState, bool) {
	return s.ClientSessionCache.Get(s.prefix + key)
}

func (s serverCache) Put(key string, cs *tls.ClientSessionState) {
	s.ClientSessionCache.Put(s.prefix+key, cs)
}

// Required says whether service at domain must be reached over TLS, and
// why: it is in tlsrequire, or it was reached over TLS before.
func (c *Client) Required(service, domain string) (string, bool) {
	if c == nil {
		return "", false
	}
	if c.require[canonDomain(domain)] {
		return "tlsrequire names " + canonDomain(domain), true
	}
	if c.seen != nil {
		if at, ok := c.seen.Seen(service, domain); ok {
			return fmt.Sprintf("%s reached over TLS on %s", canonDomain(domain), at), true
		}
	}
	return "", false
}

// Reached records that service at domain was reached over verified TLS.
// A failure to remember is returned for the caller to log; the connection
// itself is good.
func (c *Client) Reached(service, domain string) error {
	if c == nil || c.seen == nil {
		return nil
	}
	return c.seen.Record(service, domain)
}

// CertError tells a handshake that failed on the server's certificate
// (unknown authority, expired, wrong name) from one that failed otherwise.
func CertError(err error) bool {
	var ua x509.UnknownAuthorityError
	var ci x509.CertificateInvalidError
	var hn x509.HostnameError
	var ve *tls.CertificateVerificationError
	return errors.As(err, &ve) || errors.As(err, &ua) || errors.As(err, &ci) || errors.As(err, &hn)
}

// Tracker remembers, one file per service and domain in Dir, the domains
// reached over verified TLS ("TLS seen once, required after", as
// chasquid's domain info does for SMTP). Levels only rise: nothing here
// ever forgets a domain; the admin removes its file to allow cleartext
// again.
type Tracker struct {
	Dir string

	mu   sync.Mutex
	seen map[string]string // key -> when first seen, as read or written
}

// key is the file name for service at domain, or "" for a name that
// cannot be a domain (it is then never remembered, and never required).
func key(service, domain string) string {
	d := canonDomain(domain)
	if d == "" || len(d) > 253 || strings.HasPrefix(d, ".") || strings.Contains(d, "..") {
		return ""
	}
	for _, r := range d {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '.' || r == '_') {
			return ""
		}
	}
	if net.ParseIP(d) != nil {
		return ""
	}
	return strings.TrimSuffix(service, "s") + "@" + d
}

func canonDomain(d string) string {
	return strings.ToLower(strings.TrimSuffix(strings.TrimSpace(d), "."))
}

// Seen says whether service at domain was reached over TLS, and when first.
func (t *Tracker) Seen(service, domain string) (string, bool) {
	k := key(service, domain)
	if k == "" {
		return "", false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if at, ok := t.seen[k]; ok {
		return at, true
	}
	b, err := readSmall(filepath.Join(t.Dir, k))
	if errors.Is(err, os.ErrNotExist) {
		return "", false
	}
	at := strings.TrimSpace(strings.TrimPrefix(string(b), "tls "))
	if err != nil || at == "" {
		// A file there that cannot be read still says TLS was seen: the
		// safe reading of a damaged record is the stricter one.
		at = "an unknown date"
	}
	t.remember(k, at)
	return at, true
}

func (t *Tracker) remember(k, at string) {
	if t.seen == nil {
		t.seen = map[string]string{}
	}
	t.seen[k] = at
}

// Record remembers service at domain as reached over TLS, durably (the
// file, then its directory, synced before Record returns).
func (t *Tracker) Record(service, domain string) error {
	if _, ok := t.Seen(service, domain); ok {
		return nil
	}
	k := key(service, domain)
	if k == "" {
		return nil
	}
	if err := os.MkdirAll(t.Dir, 0o700); err != nil {
		return err
	}
	at := time.Now().UTC().Format(time.RFC3339)
	if err := durable.WriteFile(filepath.Join(t.Dir, k), []byte("tls "+at+"\n"), 0o600, t.Dir); err != nil {
		return err
	}
	t.mu.Lock()
	t.remember(k, at)
	t.mu.Unlock()
	return nil
}

// readSmall reads at most 256 octets of a tracking file: it is written
// here, but a bound costs nothing.
func readSmall(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, 256)
	n, err := f.Read(b)
	if n > 0 {
		err = nil
	}
	return b[:n], err
}
