package tlsconf

import (
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Session tickets. crypto/tls makes random ticket keys per Config, so
// that a ticket is taken only by the process that issued it. Under
// tcpserver every connection is a process of its own, and a listener's
// keys die with it: no session would ever resume there, nor across a
// restart. So the keys are derived from the private key being served
// (HKDF-SHA256, one key per UTC day; tickets of today and yesterday are
// taken): every process serving the same pair takes the tickets of the
// others, and the keys rotate daily without any state on disk.
//
// Whoever holds the private key can decrypt the tickets, and so learn the
// resumption secrets of TLS 1.3 sessions. That adds nothing to what the
// key already gives: it can impersonate the server; a TLS 1.3 ticket's
// secret is derived one way from the session's, so the session it came
// from stays secret; and resumption as crypto/tls makes it (psk_dhe_ke)
// makes a fresh key exchange, so recorded resumed traffic stays secret
// too. A TLS 1.2 ticket is another matter: it holds the session's master
// secret itself, sent where a recorder sees it, so keys derived from the
// private key would let a later thief of the key read recorded sessions.
// Clients without TLS 1.3 are therefore served with crypto/tls's random
// keys (Certs.Config), and resume only within a process, as before. A new
// key (a renewal that changes it) invalidates earlier tickets: the next
// session is a full handshake.

// testClock, when not zero, is the rotation's clock in Unix nanoseconds,
// for a test to move across days; atomic, since handshakes read it.
var testClock atomic.Int64

// ticketNow is the clock of the rotation.
func ticketNow() time.Time {
	if n := testClock.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Now()
}

// ticketDay is the rotation period's number at t.
func ticketDay(t time.Time) int64 { return t.Unix() / 86400 }

// ticketRotor keeps one Config's ticket keys those of the pair in use
// and of the day, checked at every ClientHello; and those of its copy for
// TLS 1.2 clients random, of this process, rotated daily too (crypto/tls
// takes the original Config's keys for a copy that has none of its own).
type ticketRotor struct {
	certs *Certs
	cfg   *tls.Config
	tls12 *tls.Config

	mu      sync.Mutex
	day     int64
	cert    *tls.Certificate // whose key the keys were derived from
	random  [32]byte         // tls12's key of the day
	rotated bool             // tls12's keys set for day
}

// rotate sets the keys if the day or the pair changed since the last
// call. The pair is checked first (Certificate: two stats), since rotate
// runs before GetCertificate would notice a renewal: else the first
// session after a renewal to a new key would get a ticket its next
// connection cannot use. Both are read under the lock, so that two
// ClientHellos across a reload or midnight cannot leave the older keys
// set. A key that cannot be marshalled (none that tls.X509KeyPair gives)
// leaves the keys as they were.
func (r *ticketRotor) rotate() {
	r.mu.Lock()
	defer r.mu.Unlock()
	cert := r.certs.Certificate()
	day := ticketDay(ticketNow())
	if !r.rotated || day != r.day {
		yesterday := r.random
		rand.Read(r.random[:])
		keys := [][32]byte{r.random}
		if r.rotated && day == r.day+1 {
			keys = append(keys, yesterday)
		}
		r.tls12.SetSessionTicketKeys(keys)
		r.rotated = true
	}
	if cert != nil && (cert != r.cert || day != r.day) {
		if keys, ok := ticketKeys(cert, day); ok {
			r.cfg.SetSessionTicketKeys(keys)
		}
		r.cert = cert
	}
	r.day = day
}

// ticketKeys are the keys for day from cert's private key: the day's
// first (it encrypts new tickets), then the day before's.
func ticketKeys(cert *tls.Certificate, day int64) ([][32]byte, bool) {
	der, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		return nil, false
	}
	prk, err := hkdf.Extract(sha256.New, der, []byte("im2000 TLS session ticket keys"))
	if err != nil {
		return nil, false
	}
	keys := make([][32]byte, 2)
	for i := range keys {
		k, err := hkdf.Expand(sha256.New, prk, "day "+strconv.FormatInt(day-int64(i), 10), 32)
		if err != nil {
			return nil, false
		}
		copy(keys[i][:], k)
	}
	return keys, true
}
