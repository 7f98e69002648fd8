#!/bin/sh
# Installs the Debian packages the tests drive (real programs, not fakes).
# As root it runs apt-get; otherwise it prints the one command to run.
set -eu
# command:package pairs
need="mutt:mutt unshare:util-linux groff:groff-base python3:python3"
missing=""
for pair in $need; do
	command -v "${pair%%:*}" >/dev/null 2>&1 || missing="$missing ${pair#*:}"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
	echo "tests/deps.sh: the tests need:$missing" >&2
	echo "tests/deps.sh: run: sudo apt-get install -y$missing" >&2
	exit 111
fi
echo "tests/deps.sh: installing:$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends $missing >/dev/null
