#!/bin/sh
# Runs every fuzz target in the module for a short while on top of its
# committed seed corpus: usage: tests/fuzz.sh [budget], default 100000x.
#
# The budget is a count of executions (Nx), not a duration: with a duration,
# Go 1.26's fuzz coordinator can report "context deadline exceeded" as a
# failure when the time runs out mid-execution (golang/go#75804, fixed in
# Go 1.27). A count has no deadline to race; a real finding still fails and
# writes its input to testdata/fuzz.
set -eu
t=${1:-100000x}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for pkg in $(go list ./...); do
	for f in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
		echo "fuzz: $pkg $f ($t)"
		go test -run '^$' -fuzz "^$f\$" -fuzztime "$t" "$pkg" >"$out" 2>&1 || { cat "$out"; exit 1; }
	done
done
