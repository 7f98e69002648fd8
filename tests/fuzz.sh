#!/bin/sh
# Runs every fuzz target in the module for a short while (default 5s each),
# on top of its committed seed corpus: usage: tests/fuzz.sh [duration]
set -eu
t=${1:-5s}
for pkg in $(go list ./...); do
	for f in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
		echo "fuzz: $pkg $f ($t)"
		go test -run '^$' -fuzz "^$f\$" -fuzztime "$t" "$pkg" >/tmp/im2000-fuzz.$$ 2>&1 || { cat /tmp/im2000-fuzz.$$; rm -f /tmp/im2000-fuzz.$$; exit 1; }
	done
done
rm -f /tmp/im2000-fuzz.$$
