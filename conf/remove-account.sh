#!/bin/sh
# conf/remove-account.sh: takes an account out of a deployment made by
# conf/host-setup.sh: its password (no more logins), its agent spool (the
# agent answers nouser from then on, so stores stop notifying it), its own
# settings and its fetch loop. Its archive stays until its messages'
# lifetimes end, so that what it sent can still be read, and its Maildir
# stays: remove them yourself (DIR/store/NAME, DIR/mail/NAME) when done.
#
# usage: conf/remove-account.sh DIR NAME
set -eu
die() { echo "remove-account.sh: $2" >&2; exit "$1"; }
[ $# -eq 2 ] || die 100 "usage: $0 DIR NAME"
dir=$1 name=$2
[ -r "$dir/host.env" ] || die 100 "$dir/host.env is missing: DIR must be a deployment made by conf/host-setup.sh"
dir=$(cd "$dir" && pwd)
case $name in '' | .* | rcpt | lists | *[!a-z0-9._-]*) die 100 "\"$name\" is not an account name" ;; esac
grep -q "^$name:" "$dir/conf/passwords" || die 100 "$name is not an account of $dir"
umask 077
grep -v "^$name:" "$dir/conf/passwords" >"$dir/conf/passwords.tmp" || true
sync "$dir/conf/passwords.tmp" 2>/dev/null || sync
mv "$dir/conf/passwords.tmp" "$dir/conf/passwords"
s=$dir/service/im2000-fetch-$name
if [ -d "$s" ]; then
	# As daemontools removes a service: out of the scanner's sight first
	# (svscan, runsvdir and s6-svscan skip names starting with a dot), then
	# the loop and its logger stopped, and the directory removed once their
	# supervisors have exited (one still writing its status made rm fail).
	gone=$dir/service/.im2000-fetch-$name.removed
	rm -rf "$gone"
	mv "$s" "$gone"
	if command -v svc >/dev/null 2>&1; then svc -dx "$gone" "$gone/log" 2>/dev/null || true; fi
	if command -v sv >/dev/null 2>&1; then sv down "$gone" "$gone/log" 2>/dev/null || true; fi
	if command -v s6-svc >/dev/null 2>&1; then s6-svc -dx "$gone" 2>/dev/null || true; fi
	i=0
	while [ $i -lt 50 ] && { svok "$gone" || svok "$gone/log"; } 2>/dev/null; do
		sleep 0.1
		i=$((i + 1))
	done
	rm -rf "$gone"
fi
rm -rf "$dir/agent/$name" "$dir/users/$name"
echo "$name removed: no logins, the agent refuses its notifications; its archive ($dir/store/$name) and Maildir ($dir/mail/$name) are kept"
