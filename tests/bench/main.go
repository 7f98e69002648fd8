// Command bench measures injection side by side in one run: the machine's
// durable-commit floor, the store's commit in-process, im2000-inject run once
// per message like sendmail, and Debian postfix's sendmail. Each is run in
// interleaved rounds; medians and ratios are printed as a Markdown table for
// BENCHMARKS.md. Timings never decide a test.
//
// It also measures the session engine: round trips per second of a trivial
// command over loopback on one session, with the server listening itself
// and under tcpserver.
//
// And the store's services: MSOAP submissions side by side with SMTP to
// postfix, and MSRAP retrieval throughput.
//
// And im2000-notifyd's queue at scale (queue.go): latency and CPU with a
// long queue, a tarpit beside a working agent, memory per queued recipient.
//
// Usage: go run ./tests/bench [-rounds 5] [-n 100] [-bin bin] [inject] [wire] [store] [notify] [lists] [smtp] [queue]
//
// The queue section has its own flags, to run it small while working on it:
// go run ./tests/bench -queued 0,1000 -qmsgs 200 -qrounds 1 -qrcpts 10000 queue
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"im2000/lib/addr"
	"im2000/lib/durable"
	"im2000/lib/store"
)

var (
	roundsFlag = flag.Int("rounds", 5, "interleaved rounds; the median is reported")
	n          = flag.Int("n", 100, "messages per round and method")
	binDir     = flag.String("bin", "bin", "directory of the built programs")
)

// message is a 4 KiB message, the size NOTES.md measured the floor with.
var message = func() []byte {
	var b bytes.Buffer
	b.WriteString("From: alice@example.org\nTo: bob@example.net\nSubject: bench\n\n")
	for b.Len() < 4096 {
		b.WriteString("The quick brown fox jumps over the lazy dog, again and again.\n")
	}
	return b.Bytes()
}()

func log(f string, a ...any) { fmt.Fprintf(os.Stderr, "bench: "+f+"\n", a...) }

func main() {
	flag.Parse()
	sections := flag.Args()
	if len(sections) == 0 {
		sections = []string{"inject", "wire", "store", "notify", "lists", "smtp", "gateway", "queue", "archive", "archive-io"}
	}
	for _, s := range sections {
		switch s {
		case "inject":
			benchInject()
		case "wire":
			benchWire()
		case "store":
			benchStore()
		case "notify":
			benchNotify()
		case "lists":
			benchLists()
		case "smtp":
			benchSMTP()
		case "gateway": // issue 20: inbound SMTP, the gateway against postfix's smtpd
			benchGateway()
		case "queue":
			benchQueue()
		case "archive":
			benchArchive()
		case "archive-io": // issue 17's goal, with the store's real processes and postfix
			benchArchiveIO()
		case "imap": // issue 19: mbsync through im2000-imapd against mpop through im2000-pop3d
			benchIMAP()
		case "tls-client": // issue 16: TLS against cleartext through the client dial
			benchTLSClient()
		case "archive-commit": // the second half of archive alone
			commitVsSize(100000)
		default:
			log("unknown section %q: inject, wire, store, notify, lists, smtp, gateway, queue or archive", s)
			os.Exit(100)
		}
	}
}

// row is one thing measured: f returns a rate, called once per round.
type row struct {
	name, unit string
	f          func() (float64, error)
	rates      []float64
}

// measure runs every row once per round, interleaved, so that drift in the
// machine's speed touches all of them alike.
func measure(rows []*row) {
	for r := 0; r < *roundsFlag; r++ {
		for _, x := range rows {
			rate, err := x.f()
			if err != nil {
				log("%s: %v", x.name, err)
				os.Exit(111)
			}
			x.rates = append(x.rates, rate)
			log("round %d: %-66s %10.1f %s", r+1, x.name, rate, x.unit)
		}
	}
}

// table prints the rows' medians and every round as Markdown.
func table(title string, rows []*row) {
	fmt.Printf("\n%s, %d rounds, medians (%s):\n\n", title, *roundsFlag, time.Now().UTC().Format("2006-01-02"))
	fmt.Println("| what | median | unit | all rounds |")
	fmt.Println("|---|---:|---|---|")
	for _, x := range rows {
		var all []string
		for _, v := range x.rates {
			all = append(all, fmt.Sprintf("%.0f", v))
		}
		fmt.Printf("| %s | %.0f | %s | %s |\n", x.name, median(x.rates), x.unit, strings.Join(all, " "))
	}
}

// timed runs f and returns count per second.
func timed(count float64, f func() error) (float64, error) {
	start := time.Now()
	err := f()
	return count / time.Since(start).Seconds(), err
}

func benchInject() {
	inject, _ := filepath.Abs(filepath.Join(*binDir, "im2000-inject"))
	if _, err := os.Stat(inject); err != nil {
		log("%v: run make first", err)
		os.Exit(111)
	}
	stopPostfix, err := startPostfix()
	if err != nil {
		log("postfix: %v", err)
		os.Exit(111)
	}
	defer stopPostfix()
	tmp, _ := os.MkdirTemp("", "im2000-bench-")
	defer os.RemoveAll(tmp)
	inDir := func(f func(dir string) error) func() (float64, error) {
		return func() (float64, error) {
			dir, err := os.MkdirTemp(tmp, "run-")
			if err != nil {
				return 0, err
			}
			defer os.RemoveAll(dir)
			return timed(float64(*n), func() error { return f(dir) })
		}
	}
	rows := []*row{
		{name: "fsync floor: create+write 4 KiB+fsync+rename+fsync(dir), in-process", unit: "msg/s", f: inDir(func(dir string) error { return floor(dir, *n) })},
		{name: "lib/store commit, in-process", unit: "msg/s", f: inDir(func(dir string) error { return storeCommit(dir, *n) })},
		{name: "exec /bin/true (process start cost)", unit: "msg/s", f: inDir(func(string) error { return execEach(*n, nil, "/bin/true") })},
		{name: "exec im2000-inject -h (Go start, no work)", unit: "msg/s", f: inDir(func(string) error { return execEach(*n, nil, inject, "-h") })},
		{name: "im2000-inject, one process per message", unit: "msg/s", f: inDir(func(dir string) error {
			os.Mkdir(filepath.Join(dir, "store"), 0o755)
			// The message says From: alice@example.org, which the store
			// takes only from alice at example.org.
			must(os.WriteFile(filepath.Join(dir, "me"), []byte("example.org\n"), 0o644))
			env := append(os.Environ(), "IM2000_STORE="+filepath.Join(dir, "store"), "IM2000_ACCOUNT=alice", "IM2000_CONF="+dir)
			return execEach(*n, env, inject, "-i", "bob@example.net")
		})},
		{name: "postfix sendmail, one process per message", unit: "msg/s", f: inDir(func(string) error {
			return execEach(*n, nil, "/usr/sbin/sendmail", "-i", "root@localhost")
		})},
	}
	measure(rows)
	table(fmt.Sprintf("Injection of %d messages of 4 KiB each", *n), rows)
	med := func(i int) float64 { return median(rows[i].rates) }
	floorRate, commit, start, inj, pf := med(0), med(1), med(3), med(4), med(5)
	fmt.Printf("\nim2000-inject / postfix sendmail: **%.1f×**  \n", inj/pf)
	fmt.Printf("fsync floor / im2000-inject: **%.1f×**; fsync floor / store commit in-process: **%.1f×**  \n", floorRate/inj, floorRate/commit)
	fmt.Printf("per message: im2000-inject %.2f ms = process start %.2f ms + store commit %.2f ms + the rest %.2f ms; postfix %.2f ms\n",
		1000/inj, 1000/start, 1000/commit, 1000/inj-1000/start-1000/commit, 1000/pf)
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func floor(dir string, n int) error {
	for i := 0; i < n; i++ {
		tmp := filepath.Join(dir, fmt.Sprintf("tmp%d", i))
		f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		if _, err := f.Write(message); err != nil {
			return err
		}
		if err := f.Sync(); err != nil {
			return err
		}
		f.Close()
		if err := os.Rename(tmp, filepath.Join(dir, fmt.Sprintf("msg%d", i))); err != nil {
			return err
		}
		if err := durable.SyncDir(dir); err != nil {
			return err
		}
	}
	return nil
}

func storeCommit(dir string, n int) error {
	s, err := store.Open(dir)
	if err != nil {
		return err
	}
	a, err := s.Account("alice")
	if err != nil {
		return err
	}
	from, _ := addr.Parse("alice@example.org")
	to, _ := addr.Parse("bob@example.net")
	for i := 0; i < n; i++ {
		d, err := a.NewDraft(store.Submission{Sender: from, Lifetime: time.Hour, Recipients: []addr.Mailbox{to}}, store.Limits{})
		if err != nil {
			return err
		}
		d.Write(message)
		if _, err := d.Commit(); err != nil {
			return err
		}
	}
	return nil
}

func execEach(n int, env []string, prog string, args ...string) error {
	for i := 0; i < n; i++ {
		cmd := exec.Command(prog, args...)
		cmd.Env = env
		cmd.Stdin = bytes.NewReader(message)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
	}
	return nil
}

// startPostfix installs postfix (as root, if missing) and starts it, and
// returns how to put it back as it was.
func startPostfix() (func(), error) {
	if _, err := os.Stat("/usr/sbin/postfix"); err != nil {
		if os.Geteuid() != 0 {
			return nil, fmt.Errorf("not installed; run: sudo apt-get install -y postfix")
		}
		log("installing postfix (Local only)")
		sh := `echo "postfix postfix/main_mailer_type select Local only" | debconf-set-selections &&
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postfix >/dev/null`
		if out, err := exec.Command("sh", "-c", sh).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("%v: %s", err, out)
		}
	}
	if exec.Command("postfix", "status").Run() == nil {
		return func() {}, nil
	}
	if out, err := exec.Command("postfix", "start").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("postfix start: %v: %s", err, out)
	}
	return func() { exec.Command("postfix", "stop").Run() }, nil
}
