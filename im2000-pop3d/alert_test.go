package main

import (
	"bytes"
	"os"

	"im2000/lib/fail"
)

// In the tests (the fuzz test above all), a panic that serve stops must
// still fail: the alert is turned back into a panic.
func init() { fail.Stderr = alertPanics{} }

type alertPanics struct{}

func (alertPanics) Write(b []byte) (int, error) {
	if bytes.Contains(b, []byte(": alert: ")) {
		panic(string(b))
	}
	return os.Stderr.Write(b)
}
