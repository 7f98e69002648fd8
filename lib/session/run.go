package session

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"im2000/lib/wire"
)

// FlagUsage describes the options every server takes, for its -h text.
const FlagUsage = `  -l addr:port  listen on addr:port instead of serving stdin/stdout
  -c n          at most n sessions at once with -l (default 40)
  -t seconds    close a session that sends no complete PDU for this long (default 120)
  -m bytes      refuse PDUs longer than this (default 1114112)
  -tls          serve TLS (implicit) with the certificate of tlscert and tlskey
  -h            show this help`

// Flags are the options every server takes.
type Flags struct {
	Listen  string        // -l ADDR:PORT: listen instead of serving stdin/stdout
	Conns   int           // -c N: sessions at once in listener mode
	Timeout time.Duration // -t SECONDS
	MaxPDU  int           // -m BYTES
	TLS     bool          // -tls: every session is TLS from its first byte (tlscert, tlskey)
}

// Register adds -l, -c, -t and -m to fs with the documented defaults.
func (f *Flags) Register(fs *flag.FlagSet) {
	f.register(fs, 120*time.Second)
	fs.IntVar(&f.MaxPDU, "m", wire.DefaultMaxPDU, "refuse PDUs longer than BYTES")
}

func (f *Flags) register(fs *flag.FlagSet, timeout time.Duration) {
	fs.StringVar(&f.Listen, "l", "", "listen on ADDR:PORT instead of serving one session on stdin/stdout")
	fs.IntVar(&f.Conns, "c", 40, "at most N sessions at once (listener mode)")
	fs.BoolVar(&f.TLS, "tls", false, "serve TLS from the first byte (implicit TLS), with the certificate of tlscert and tlskey")
	fs.Func("t", "close an idle session after SECONDS", func(s string) error {
		var secs int
		if _, err := fmt.Sscan(s, &secs); err != nil || secs <= 0 {
			return fmt.Errorf("want a number of seconds above 0")
		}
		f.Timeout = time.Duration(secs) * time.Second
		return nil
	})
	f.Timeout = timeout
}

// Run serves according to the flags: one session on stdin/stdout, or a
// listener until SIGTERM or SIGINT, on which sessions finish the command
// they are carrying out, answer errorserviceshutdown and close.
func Run(srv *Server, f Flags) error {
	srv.Timeout, srv.MaxConns, srv.MaxPDU = f.Timeout, f.Conns, f.MaxPDU
	if srv.MaxConns <= 0 {
		srv.MaxConns = 1
	}
	lim, _ := srv.current() // a Reconfigure may have come first
	srv.mu.Lock()
	srv.listen = f.Listen != ""
	srv.slots = lim.SlotsFor(srv.listen)
	srv.mu.Unlock()
	if err := srv.loadTLS(f); err != nil {
		return err
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	if f.Listen == "" {
		go func() {
			<-sig
			srv.Shutdown()
		}()
		return srv.ServeStdio()
	}
	l, err := net.Listen("tcp", f.Listen)
	if err != nil {
		return err
	}
	srv.logListening(l.Addr(), srv.MaxConns)
	go func() {
		<-sig
		srv.logShuttingDown()
		srv.Shutdown()
		l.Close()
	}()
	return srv.ServeListener(l)
}

// ParseFlags reads a server's command line: the common flags, -h for the
// usage text (which matches the program's man page), and nothing else.
func ParseFlags(name, usage string, args []string) Flags {
	var f Flags
	parse(name, usage, args, &f, f.Register)
	return f
}

// ParseTextFlags reads the command line of a server of a line protocol
// (SMTP, POP3): -l, -c and -t, whose default is timeout; no -m, as such a
// server limits lines and messages instead of PDUs.
func ParseTextFlags(name, usage string, args []string, timeout time.Duration) Flags {
	var f Flags
	parse(name, usage, args, &f, func(fs *flag.FlagSet) { f.register(fs, timeout) })
	return f
}

func parse(name, usage string, args []string, f *Flags, register func(*flag.FlagSet)) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	register(fs)
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Println(usage)
		os.Exit(0)
	}
	if err == nil && fs.NArg() > 0 {
		err = fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if err == nil && f.Conns < 1 {
		err = errors.New("-c wants a number of sessions above 0")
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n%s\n", name, err, usage)
		os.Exit(100)
	}
}
