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
// Usage: go run ./tests/bench [-rounds 5] [-n 100] [-bin bin] [inject] [wire] [store]
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

type method struct {
	name string
	run  func(dir string, n int) error // n messages, in a fresh directory
}

func log(f string, a ...any) { fmt.Fprintf(os.Stderr, "bench: "+f+"\n", a...) }

func main() {
	flag.Parse()
	sections := flag.Args()
	if len(sections) == 0 {
		sections = []string{"inject", "wire", "store"}
	}
	for _, s := range sections {
		switch s {
		case "inject":
			benchInject()
		case "wire":
			benchWire()
		case "store":
			benchStore()
		default:
			log("unknown section %q: inject, wire or store", s)
			os.Exit(100)
		}
	}
}

// median runs f rounds times and returns the median rate and every rate.
func rounds(f func() (float64, error)) (float64, []float64) {
	var rates []float64
	for r := 0; r < *roundsFlag; r++ {
		rate, err := f()
		if err != nil {
			log("%v", err)
			os.Exit(111)
		}
		rates = append(rates, rate)
	}
	return median(rates), rates
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

	methods := []method{
		{"fsync floor: create+write 4 KiB+fsync+rename+fsync(dir), in-process", floor},
		{"lib/store commit, in-process", storeCommit},
		{"exec /bin/true (process start cost)", func(dir string, n int) error { return execEach(n, nil, "/bin/true") }},
		{"exec im2000-inject -h (Go start, no work)", func(dir string, n int) error { return execEach(n, nil, inject, "-h") }},
		{"im2000-inject, one process per message", func(dir string, n int) error {
			os.Mkdir(filepath.Join(dir, "store"), 0o755)
			env := append(os.Environ(), "IM2000_STORE="+filepath.Join(dir, "store"), "IM2000_ACCOUNT=alice", "IM2000_CONF="+dir)
			return execEach(n, env, inject, "-i", "bob@example.net")
		}},
		{"postfix sendmail, one process per message", func(dir string, n int) error {
			return execEach(n, nil, "/usr/sbin/sendmail", "-i", "root@localhost")
		}},
	}
	rates := make([][]float64, len(methods))
	tmp, _ := os.MkdirTemp("", "im2000-bench-")
	defer os.RemoveAll(tmp)
	for r := 0; r < *roundsFlag; r++ {
		for i, m := range methods {
			dir, _ := os.MkdirTemp(tmp, "run-")
			start := time.Now()
			if err := m.run(dir, *n); err != nil {
				log("%s: %v", m.name, err)
				os.Exit(111)
			}
			rate := float64(*n) / time.Since(start).Seconds()
			rates[i] = append(rates[i], rate)
			log("round %d: %-70s %8.0f/s", r+1, m.name, rate)
			os.RemoveAll(dir)
		}
	}
	med := make([]float64, len(methods))
	for i := range rates {
		med[i] = median(rates[i])
	}
	fmt.Printf("Injection, %d rounds of %d messages of 4 KiB each, medians (%s):\n\n", *roundsFlag, *n, time.Now().UTC().Format("2006-01-02"))
	fmt.Println("| method | messages/s (median) | all rounds |")
	fmt.Println("|---|---:|---|")
	for i, m := range methods {
		var all []string
		for _, x := range rates[i] {
			all = append(all, fmt.Sprintf("%.0f", x))
		}
		fmt.Printf("| %s | %.0f | %s |\n", m.name, med[i], strings.Join(all, " "))
	}
	floorRate, commit, start, inj, pf := med[0], med[1], med[3], med[4], med[5]
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
