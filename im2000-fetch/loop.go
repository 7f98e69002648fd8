package main

import (
	"errors"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"im2000/lib/fail"
)

// loop is -loop SECONDS, the supervised mode (a service directory's run
// file): one ordinary run of im2000-fetch, as a child process with the
// same arguments but -loop, every interval, and at once on SIGHUP or
// SIGALRM (svc -h, svc -a), so that a user's mail appears in the Maildir
// without a cron job. Each run is a fresh process, so nothing one run
// holds (a lock, a store's session, memory) outlives it, and a run that
// fails, however, is logged and tried again at the next tick: a supervisor
// restarting a dead loop would only do the same, later. SIGTERM ends the
// loop after the run under way, which it lets finish (a run is bounded
// by the settings' timeouts), so that nothing is delivered twice. Its
// own lines follow im2000-log(5)'s vocabulary, as a daemon's do.
func loop(interval time.Duration, args []string) {
	self, err := os.Executable()
	if err != nil {
		logFatal(fail.Temp(err))
	}
	wake := make(chan os.Signal, 1)
	signal.Notify(wake, syscall.SIGHUP, syscall.SIGALRM)
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	logLoopStarted(interval)
	for {
		cmd := exec.Command(self, args...)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, os.Stderr, os.Stderr
		err := cmd.Run()
		var exit *exec.ExitError
		switch {
		case errors.As(err, &exit) && exit.ExitCode() == fail.Permanent:
			logRunFailedPerm(interval)
		case err != nil:
			logRunFailed(err, interval)
		}
		timer := time.NewTimer(interval)
		select {
		case <-timer.C:
		case s := <-wake:
			timer.Stop()
			logLoopWoken(s)
		case s := <-stop:
			timer.Stop()
			logLoopStopped(s)
			os.Exit(0)
		}
		// A signal that came during the run wakes the next one at once:
		// it may be about mail that came after the run asked the agent.
	}
}

// withoutLoop is the command line with -loop and its value taken out.
func withoutLoop(args []string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			out = append(out, args[i:]...)
			break
		}
		switch {
		case a == "-loop" || a == "--loop":
			i++ // its value
		case strings.HasPrefix(a, "-loop=") || strings.HasPrefix(a, "--loop="):
		default:
			out = append(out, a)
		}
	}
	return out
}
