// Package tlsconf is the TLS of im2000's programs (DESIGN.md section 3,
// "TLS"; issue 16): the server side here (certificate and key from the
// configuration directory, picked up again when they change), the client
// side (location of the TLS forms, verification, downgrade tracking) in
// client.go beside it. Both share MinVersion and the settings' names.
package tlsconf

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"im2000/lib/conf"
)

// MinVersion is the oldest TLS spoken, by servers and clients alike. TLS
// 1.3 is preferred: crypto/tls negotiates the newest both ends have.
const MinVersion = tls.VersionTLS12

// The settings of the server side.
const (
	SettingCert          = "tlscert"       // path of the certificate chain, PEM, leaf first
	SettingKey           = "tlskey"        // path of its private key, PEM
	SettingCleartextAuth = "cleartextauth" // 1: passwords accepted over cleartext from anywhere
)

// ErrNoCert is Load's answer when tlscert and tlskey are not set.
var ErrNoCert = errors.New("no certificate configured")

// Certs is a server's certificate and key, read from their files and read
// again when the files change (renewals by certbot, lego or uacme) or on
// SIGHUP, without a restart. A new pair that does not load (a renewal half
// written, a key that does not match) leaves the old one in use, with a
// log line; it is tried again when the files change again.
type Certs struct {
	CertFile, KeyFile string
	Log               func(format string, a ...any)

	mu      sync.Mutex
	cert    *tls.Certificate
	serving stamp // of the files that made cert
	tried   stamp // of the files last tried, good or bad: a bad pair is not retried until it changes
	// A file rewritten in place within one timestamp tick of the last try
	// keeps its stamp (Linux takes file times from a coarse clock). Until
	// a check made well after the files' last change, an equal stamp is
	// confirmed by comparing contents, as git does with racily clean files.
	triedSum   [sha256.Size]byte
	servingSum [sha256.Size]byte
	racyUntil  time.Time // zero: the stamp alone decides
}

// racyWindow is how long after a change a file's times may not tell a
// second change from it; far more than any kernel's tick.
const racyWindow = 2 * time.Second

// stamp identifies a version of the two files cheaply (stat, following
// symlinks: certbot's live/ links move to new files in archive/ on renewal).
type stamp struct {
	cert, key fileStamp
}

type fileStamp struct {
	dev, ino  uint64
	size      int64
	mtime     time.Time
	ctimeNsec int64
}

// changed is the later of the file's modification and change times.
func (f fileStamp) changed() time.Time {
	if c := time.Unix(0, f.ctimeNsec); c.After(f.mtime) {
		return c
	}
	return f.mtime
}

// statFile is a variable so that a test can play a coarse file clock.
var statFile = func(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	s := fileStamp{size: fi.Size(), mtime: fi.ModTime()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		s.dev, s.ino = uint64(st.Dev), st.Ino
		s.ctimeNsec = st.Ctim.Sec*1e9 + st.Ctim.Nsec
	}
	return s, nil
}

// Load reads the settings tlscert and tlskey of d (a relative path is taken
// from d) and the pair they name. Neither set: ErrNoCert. log takes the
// reload messages (nil: none).
func Load(d conf.Dir, log func(format string, a ...any)) (*Certs, error) {
	cert, err := d.Str(SettingCert)
	if err != nil {
		return nil, err
	}
	key, err := d.Str(SettingKey)
	if err != nil {
		return nil, err
	}
	switch {
	case cert == "" && key == "":
		return nil, fmt.Errorf("%w: write the paths of a PEM certificate chain and its key to %s and %s", ErrNoCert, d.Path(SettingCert), d.Path(SettingKey))
	case cert == "" || key == "":
		return nil, fmt.Errorf("%s and %s go together: set both or neither", d.Path(SettingCert), d.Path(SettingKey))
	}
	if !filepath.IsAbs(cert) {
		cert = d.Path(cert)
	}
	if !filepath.IsAbs(key) {
		key = d.Path(key)
	}
	c := &Certs{CertFile: cert, KeyFile: key, Log: log}
	if err := c.Reload(true); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Certs) logf(format string, a ...any) {
	if c.Log != nil {
		c.Log(format, a...)
	}
}

// Reload reads the pair again if its files changed since they were last
// tried (force: whatever their stamps). An error leaves the pair in use
// as it was; it is logged unless there was none in use (Load's first
// read, which returns it instead).
func (c *Certs) Reload(force bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	cs, err1 := statFile(c.CertFile)
	ks, err2 := statFile(c.KeyFile)
	now := stamp{cs, ks}
	if err := errors.Join(err1, err2); err != nil {
		if c.cert == nil {
			return err
		}
		if force || c.tried != now {
			c.tried = now
			c.logf("tls: keeping the certificate in use: %v", err)
		}
		return err
	}
	if !force && now == c.tried && c.racyUntil.IsZero() {
		return nil // the common case: two stats, no reading
	}
	checked := time.Now()
	certPEM, err1 := readPEM(c.CertFile)
	keyPEM, err2 := readPEM(c.KeyFile)
	if !force && now == c.tried {
		// A read that fails under the stamp last tried says nothing new:
		// logged once already (or a transient error, with the pair that
		// loaded staying in use either way).
		if err1 != nil || err2 != nil || pairSum(certPEM, keyPEM) == c.triedSum {
			if checked.After(c.racyUntil) {
				c.racyUntil = time.Time{}
			}
			return nil
		}
		// Rewritten in place under the same stamp: read it as a change.
	}
	c.tried = now
	c.triedSum = pairSum(certPEM, keyPEM)
	c.racyUntil = time.Time{}
	if last := maxTime(cs.changed(), ks.changed()).Add(racyWindow); last.After(checked) {
		c.racyUntil = last
	}
	var pair tls.Certificate
	err := errors.Join(err1, err2)
	if err == nil {
		pair, err = tls.X509KeyPair(certPEM, keyPEM)
	}
	if err == nil {
		pair.Leaf, err = x509.ParseCertificate(pair.Certificate[0])
	}
	if err != nil {
		err = fmt.Errorf("%s and %s: %v", c.CertFile, c.KeyFile, err)
		if c.cert != nil {
			c.logf("tls: keeping the certificate in use, the new pair does not load (fix it, or wait for the renewal to finish): %v", err)
		}
		return err
	}
	if c.cert != nil && (now != c.serving || c.triedSum != c.servingSum) {
		c.logf("tls: serving the new certificate of %s, serial %x, valid until %s", c.CertFile, pair.Leaf.SerialNumber, pair.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	c.cert, c.serving, c.servingSum = &pair, now, c.triedSum
	return nil
}

// maxPEM bounds what is read of each file. A chain of a few certificates,
// or a key, is a few kilobytes; the files are read under the lock every
// handshake takes, so a renewal gone wrong (a huge file, a link to
// /dev/zero) must cost no more than this to find out.
const maxPEM = 1 << 20

// readPEM reads path, following symlinks, if it is a regular file of at
// most maxPEM bytes. Opened without blocking: a FIFO put there would
// otherwise hold the lock until someone writes to it.
func readPEM(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	switch {
	case err != nil:
		return nil, err
	case !fi.Mode().IsRegular():
		return nil, fmt.Errorf("%s: not a regular file (%v)", path, fi.Mode().Type())
	case fi.Size() > maxPEM:
		return nil, fmt.Errorf("%s: %d bytes, more than a certificate chain or key takes (%d at most)", path, fi.Size(), maxPEM)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxPEM+1))
	if err == nil && len(b) > maxPEM { // grew since the stat
		err = fmt.Errorf("%s: more than %d bytes, more than a certificate chain or key takes", path, maxPEM)
	}
	return b, err
}

// Certificate is the pair to serve now: the files are checked (two stats)
// and read again if they changed.
func (c *Certs) Certificate() *tls.Certificate {
	c.Reload(false) // an error is logged, and the old pair stays
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cert
}

// ReloadOnSIGHUP reads the pair again on each SIGHUP, whether or not the
// files look changed (a file rewritten in place within the same
// timestamp tick, say). One per process: the Certs last asked for is the
// one read. A program that loads its settings again on each SIGHUP makes
// a new Certs each time (imapd); a goroutine for each would read the pair
// and log it once more with every SIGHUP (the review counted 15 lines
// after 5 SIGHUPs), and the older pairs serve only sessions begun before.
func (c *Certs) ReloadOnSIGHUP() {
	onSIGHUP.certs.Store(c)
	onSIGHUP.once.Do(func() {
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGHUP)
		go func() {
			for range ch {
				c := onSIGHUP.certs.Load()
				if err := c.Reload(true); err == nil {
					c.logf("tls: SIGHUP: certificate of %s loaded", c.CertFile)
				}
			}
		}()
	})
}

// onSIGHUP is the process's one SIGHUP reader of a pair (ReloadOnSIGHUP).
var onSIGHUP struct {
	once  sync.Once
	certs atomic.Pointer[Certs]
}

// Config is the server configuration: TLS 1.2 at least, 1.3 preferred,
// the certificate looked up at each handshake, session tickets under keys
// derived from the private key (tickets.go), so that a client resumes with
// any process serving the pair: a later connection to the same listener,
// the listener after a restart, and each connection's process under
// tcpserver alike. Use one Config for every connection of a process.
func (c *Certs) Config() *tls.Config {
	cfg := &tls.Config{
		MinVersion: MinVersion,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return c.Certificate(), nil
		},
	}
	// A client without TLS 1.3 is served by a copy whose ticket keys are
	// random, made in this process: a TLS 1.2 ticket holds the session's
	// master secret, which keys derived from the private key would hand to
	// whoever takes the key later (tickets.go).
	r := &ticketRotor{certs: c, cfg: cfg, tls12: cfg.Clone()}
	r.rotate()
	cfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		r.rotate() // a new day, or a pair loaded since: new keys
		if !slices.Contains(hello.SupportedVersions, tls.VersionTLS13) {
			return r.tls12, nil
		}
		return nil, nil
	}
	return cfg
}

// ServerConfig loads the pair of d (Load), arranges for SIGHUP to reload
// it, and returns the configuration to serve with.
func ServerConfig(d conf.Dir, log func(format string, a ...any)) (*tls.Config, error) {
	c, err := Load(d, log)
	if err != nil {
		return nil, err
	}
	c.ReloadOnSIGHUP()
	return c.Config(), nil
}

// ClearAuth reads the setting cleartextauth: 1 lets passwords cross a
// cleartext connection from anywhere (behind a TLS-terminating proxy, or
// on a network the admin trusts), 0 (the default) only from loopback.
func ClearAuth(d conf.Dir) (bool, error) {
	n, err := d.Num(SettingCleartextAuth)
	if err != nil {
		return false, err
	}
	if n != 0 && n != 1 {
		return false, fmt.Errorf("%s: want 0 or 1", d.Path(SettingCleartextAuth))
	}
	return n == 1, nil
}

// PasswordOK says whether a password may be taken on a connection: over
// TLS, from a loopback address, from a local user (localUser: stdin and
// stdout are pipes and nothing names a peer, session.LocalUser), or
// anywhere when the admin allowed it (cleartextauth). A connection with
// no IP address that is not a local user's (a Unix-domain socket, the
// socketpair socat's EXEC hands over) counts as remote: whatever relays
// into it may take its bytes from anywhere.
func PasswordOK(overTLS bool, peer netip.Addr, localUser, clearAuth bool) bool {
	return overTLS || clearAuth || localUser || peer.IsValid() && peer.Unmap().IsLoopback()
}

func pairSum(cert, key []byte) [sha256.Size]byte {
	h := sha256.New()
	fmt.Fprintf(h, "%d\n", len(cert))
	h.Write(cert)
	h.Write(key)
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
