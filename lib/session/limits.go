package session

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"im2000/lib/conf"
)

// Limits bound what one remote address can hold of a server: sessions at
// once, and how long each may last, so that a few idle-but-alive clients
// cannot keep the slots from everybody else (issue 15).
type Limits struct {
	PerAddr  int           // sessions at once from one address (IPv6: one /64); 0: no cap
	Lifetime time.Duration // a session is closed this long after it began; 0: never
	AuthTime time.Duration // a session not authenticated this long after it began is closed; 0: never
	// Slots counts the sessions per address. Under tcpserver every session
	// is a process of its own, so the count lives in lock files in Dir
	// (FileSlots); a listener counts in memory. Nil: chosen by Run.
	Slots Slots
	Dir   string // for FileSlots
}

// LimitsFromConf reads the settings sessionsperaddr, sessionlifetime and
// authtimeout (seconds); dir is where the per-address slot files live when
// each session is a process (a directory the server owns, made when first
// needed: a listener counts in memory and leaves no trace).
func LimitsFromConf(d conf.Dir, dir string) (Limits, error) {
	l := Limits{Dir: dir}
	n, err := d.Num("sessionsperaddr")
	if err != nil {
		return l, err
	}
	life, err := d.Num("sessionlifetime")
	if err != nil {
		return l, err
	}
	auth, err := d.Num("authtimeout")
	if err != nil {
		return l, err
	}
	if n < 0 || life < 0 || auth < 0 {
		return l, fmt.Errorf("%s, %s and %s want numbers of at least 0", d.Path("sessionsperaddr"), d.Path("sessionlifetime"), d.Path("authtimeout"))
	}
	l.PerAddr = int(min(n, 1<<20))
	l.Lifetime = time.Duration(min(life, 1<<32)) * time.Second
	l.AuthTime = time.Duration(min(auth, 1<<32)) * time.Second
	return l, nil
}

// Deadline is when a session that began at start must have sent its next
// line or PDU: in idle from now, but never past its lifetime, nor, while
// it is not authenticated, past the time it has for that. why says which
// limit it is ("" for the idle timeout), for the log and the client.
func (l Limits) Deadline(start time.Time, idle time.Duration, authenticated bool) (time.Time, string) {
	d, why := time.Now().Add(idle), ""
	if l.Lifetime > 0 && start.Add(l.Lifetime).Before(d) {
		d, why = start.Add(l.Lifetime), fmt.Sprintf("session lifetime of %v over", l.Lifetime)
	}
	if !authenticated && l.AuthTime > 0 && start.Add(l.AuthTime).Before(d) {
		d, why = start.Add(l.AuthTime), fmt.Sprintf("not authenticated within %v", l.AuthTime)
	}
	return d, why
}

// Slots counts sessions per remote address.
type Slots interface {
	// Acquire takes one of a's slots; ok is false when all are taken.
	// release gives it back (a no-op when ok is false).
	Acquire(a netip.Addr) (release func(), ok bool, err error)
}

// AddrKey names the group an address counts in: an IPv4 address itself,
// an IPv6 address its /64 (one subscriber's usual allocation, so that a
// client cannot dodge the cap by changing its interface identifier). The
// name is safe as a file name. It is the one rule for every limit per
// address: session slots, lib/auth's delays, im2000-agentd's rate and
// held counts.
func AddrKey(a netip.Addr) string {
	if !a.IsValid() { // a session without an address (ServeStdio says so)
		return "unknown"
	}
	a = a.Unmap()
	if a.Is4() {
		return a.String()
	}
	p, _ := a.WithZone("").Prefix(64)
	return strings.ReplaceAll(p.Addr().String(), ":", "_") + "-64"
}

// SlotsFor returns the Slots a server uses: in memory for a listener,
// lock files in l.Dir for a process per session (tcpserver).
func (l Limits) SlotsFor(listener bool) Slots {
	switch {
	case l.Slots != nil:
		return l.Slots
	case l.PerAddr <= 0:
		return nil
	case listener || l.Dir == "":
		return NewMemSlots(l.PerAddr)
	}
	return &FileSlots{Dir: l.Dir, N: l.PerAddr}
}

// MemSlots counts in memory, for a listener: one process sees every session.
type MemSlots struct {
	n  int
	mu sync.Mutex
	m  map[string]int
}

// NewMemSlots allows n sessions per address.
func NewMemSlots(n int) *MemSlots { return &MemSlots{n: n, m: map[string]int{}} }

// setN changes the cap; sessions over a lowered cap go on, and no new one
// comes in until they are under it.
func (s *MemSlots) setN(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n = n
}

// Acquire counts a session without an address (pipes, or a superserver
// that says nothing) under AddrKey's "unknown", one count for all of them,
// as the log says: letting them in uncounted would make "no address" a way
// around the cap.
func (s *MemSlots) Acquire(a netip.Addr) (func(), bool, error) {
	k := AddrKey(a)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m[k] >= s.n {
		return func() {}, false, nil
	}
	s.m[k]++
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.m[k]--; s.m[k] <= 0 {
				delete(s.m, k)
			}
		})
	}, true, nil
}

// FileSlots counts across processes: slot i of an address is the file
// ADDR.i in Dir, taken by holding an flock on it. The kernel drops the lock
// when the process ends however it ends, so a crash cannot leak a slot; a
// released slot's file is removed, so the directory holds only what is in
// use (and what a crashed process left, which the next taker reuses).
type FileSlots struct {
	Dir string
	N   int
}

// Acquire counts sessions without an address under "unknown", as
// MemSlots does.
func (s *FileSlots) Acquire(a netip.Addr) (func(), bool, error) {
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return func() {}, false, err
	}
	k := AddrKey(a)
	for i := 0; i < s.N; i++ {
		path := filepath.Join(s.Dir, k+"."+strconv.Itoa(i))
		f, err := LockFile(path, false)
		if errors.Is(err, ErrLocked) {
			continue
		}
		if err != nil {
			return func() {}, false, err
		}
		return func() {
			// Removed while still locked: a process that opened the file
			// meanwhile finds, once it has the lock, that the name no longer
			// leads to it, and starts over (LockFile).
			os.Remove(path)
			f.Close()
		}, true, nil
	}
	return func() {}, false, nil
}

// ErrLocked is LockFile's answer when another holds the lock and wait is
// false.
var ErrLocked = errors.New("locked by another")

// LockFile opens (creating) path and takes an exclusive flock on it,
// waiting for it if wait is set. It makes sure the file it locked is still
// the one path names: lock files are removed by their holders, and a lock
// on a removed file would count for nothing. The descriptor is closed on
// exec, so a program the holder runs does not keep the lock.
func LockFile(path string, wait bool) (*os.File, error) {
	how := unix.LOCK_EX
	if !wait {
		how |= unix.LOCK_NB
	}
	for try := 0; try < 100; try++ {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
		if err != nil {
			return nil, err
		}
		for {
			err = unix.Flock(int(f.Fd()), how)
			if err != unix.EINTR {
				break
			}
		}
		if err == unix.EWOULDBLOCK {
			f.Close()
			return nil, ErrLocked
		}
		if err != nil {
			f.Close()
			return nil, err
		}
		fi, err1 := f.Stat()
		pi, err2 := os.Lstat(path)
		if err1 == nil && err2 == nil && os.SameFile(fi, pi) {
			return f, nil
		}
		f.Close() // removed or replaced meanwhile: take the new one
	}
	return nil, fmt.Errorf("%s: removed and made again too often while locking it", path)
}

// StdioPeer is the address of the peer of a session on stdin/stdout
// (StdioConn gave c), and the local one: from TCPREMOTEIP, TCPREMOTEPORT,
// TCPLOCALIP and TCPLOCALPORT as tcpserver sets them or, without them
// (inetd, systemd's Accept=yes), from the socket stdin is. Neither: the
// zero AddrPort, which the limits per address count as "unknown". The one
// rule for every server run per connection.
func StdioPeer(c net.Conn) (remote, local netip.AddrPort) {
	remote, local = envAddrPort("TCPREMOTEIP", "TCPREMOTEPORT"), envAddrPort("TCPLOCALIP", "TCPLOCALPORT")
	if !remote.Addr().IsValid() && c != nil {
		remote, local = addrPort(c.RemoteAddr()), addrPort(c.LocalAddr())
	}
	return remote, local
}

// LocalUser says whether a session on stdin/stdout (StdioConn gave c) is
// a local user's, who may send a password in cleartext
// (tlsconf.PasswordOK): stdin is no socket at all (pipes: somebody on this
// host ran the server, or a program of theirs did) and nothing names a
// peer (no TCPREMOTEIP). A socket without an IP address is not a local
// user's: a Unix-domain socket, or the socketpair socat's EXEC hands over
// (socat TCP-LISTEN:110,fork EXEC:im2000-pop3d sets no TCPREMOTEIP),
// relays from wherever its other end listens. The one rule for every
// server run per connection.
func LocalUser(c Conn) bool {
	_, pipes := c.(*pipeConn)
	return pipes && os.Getenv("TCPREMOTEIP") == ""
}

// ServerLimits reads the limits of a server of protocol name whose own
// state lives under root (a store's root, an agent's spool): its slot
// files go to root/.sessions/NAME, apart from other servers' on the same
// root, as each service has its own cap.
func ServerLimits(d conf.Dir, root, name string) (Limits, error) {
	return LimitsFromConf(d, filepath.Join(root, ".sessions", strings.ToLower(name)))
}
