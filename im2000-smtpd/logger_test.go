package main

import (
	"os"
	"runtime/debug"
	"strings"
	"testing"

	"im2000/lib/fail"
)

func boom() {
	var s []int
	_ = s[2]
}

// TestPanicAlert: go-smtp's report of a panic it stopped becomes one alert
// line with a short stack.
func TestPanicAlert(t *testing.T) {
	var b strings.Builder
	fail.Stderr = &b
	defer func() { fail.Stderr = os.Stderr }()
	func() {
		defer func() {
			if err := recover(); err != nil { // as go-smtp's Conn.handle does
				logger{}.Printf("panic serving %v: %v\n%s", "127.0.0.1:1", err, debug.Stack())
			}
		}()
		boom()
	}()
	line := b.String()
	if !strings.Contains(line, ": alert: panic in the SMTP session with 127.0.0.1:1: runtime error: index out of range [2] with length 0, at ") ||
		!strings.Contains(line, ".boom (logger_test.go:14) < ") || strings.Count(line, "\n") != 1 || strings.Contains(line, "runtime.") {
		t.Errorf("alert %q", line)
	}
}
