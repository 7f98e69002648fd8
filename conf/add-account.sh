#!/bin/sh
# conf/add-account.sh: adds an account to a deployment made by
# conf/host-setup.sh: its password (a bcrypt line in conf/passwords), its
# archive at the store (so im2000-inject knows it), its agent spool, its
# own settings in DIR/users/NAME (IM2000_CONF for im2000-inject,
# im2000-status and im2000-fetch: submission over MSOAP on loopback), its
# Maildir, and a supervised fetch loop that delivers its mail there.
#
# usage: conf/add-account.sh [-C cost] DIR NAME [PASSWORD]
#
# Without PASSWORD one is made up. -C is the bcrypt cost (default 10: about
# 0.1 s of CPU at each login, which the agent pays again at every run of
# the account's fetch loop; 4 is the least, for tests). The password is printed, and kept in
# DIR/users/NAME/password (mode 600) for the account's own programs.
# Exit 100 if the name is not a valid account name or is taken.
set -eu
die() { echo "add-account.sh: $2" >&2; exit "$1"; }
cost=10
while getopts C: opt; do
	case $opt in
	C) cost=$OPTARG ;;
	*) die 100 "usage: $0 [-C cost] DIR NAME [PASSWORD]" ;;
	esac
done
shift $((OPTIND - 1))
case $cost in [4-9] | 1[0-9] | 2[0-9] | 3[01]) ;; *) die 100 "-C: the bcrypt cost is from 4 to 31" ;; esac
[ $# -ge 2 ] && [ $# -le 3 ] || die 100 "usage: $0 [-C cost] DIR NAME [PASSWORD]"
dir=$1 name=$2
[ -r "$dir/host.env" ] || die 100 "$dir/host.env is missing: DIR must be a deployment made by conf/host-setup.sh"
dir=$(cd "$dir" && pwd)
. "$dir/host.env"
# The store's rule for account names (lib/store CheckAccount), lowercase
# since the agent matches local parts without regard to case.
case $name in
'' | .* | rcpt | lists | *[!a-z0-9._-]*) die 100 "\"$name\" is not an account name: use lowercase letters, digits, '.', '_' and '-', not first '.'" ;;
esac
[ ${#name} -le 64 ] || die 100 "\"$name\" is longer than 64 characters"
[ "$name" != "${gateway:-smtp}" ] || die 100 "$name is the SMTP gateway's account (gatewayaccount), which has no password: choose another name"
! grep -q "^$name:" "$dir/conf/passwords" 2>/dev/null || die 100 "$name is already an account of $dir"
if [ $# -eq 3 ]; then pw=$3; else pw=$(od -An -N9 -tx1 /dev/urandom | tr -d ' \n'); fi
case $pw in '' | *[[:cntrl:]]*) die 100 "the password must not be empty or hold control characters" ;; esac

# bcrypt: htpasswd (apache2-utils) or Python's crypt module, as setup.sh.
hash() {
	if command -v htpasswd >/dev/null 2>&1; then
		htpasswd -nbB -C "$cost" x "$1" | cut -d: -f2
	elif python3 -W ignore -c 'import crypt' 2>/dev/null; then
		python3 -W ignore -c 'import crypt, sys; print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=1 << int(sys.argv[2]))))' "$1" "$cost"
	else
		die 111 "need htpasswd (apache2-utils) or python3 to hash passwords"
	fi
}
h=$(hash "$pw")
case $h in '$2'*) ;; *) die 111 "hashing the password failed" ;; esac

umask 077
c=$dir/conf
# The password line goes in last, by rename: a login works only once
# everything else is in place, and a reader never sees half a file.
mkdir -p "$dir/store/$name" "$dir/agent/$name" "$dir/mail/$name/tmp" "$dir/mail/$name/new" "$dir/mail/$name/cur"
u=$dir/users/$name
mkdir -p "$u"
echo "$domain" >"$u/me"
echo "127.0.0.1:$port" >"$u/remote"
echo "127.0.0.1:$((port + 3))" >"$u/rna"
printf '%s\n' "$pw" >"$u/password"
echo "$dir/mail/$name" >"$u/maildir"
echo "$u/sent" >"$u/sentlog"
for f in resolvers tlsca; do # as the servers find and trust others
	[ ! -e "$c/$f" ] || cp "$c/$f" "$u/$f"
done
s=$dir/service/im2000-fetch-$name
mkdir -p "$s/log/main"
printf '#!/bin/sh\nexec 2>&1\nexec env IM2000_CONF=%s IM2000_ACCOUNT=%s HOME=%s %s/im2000-fetch -loop %s\n' \
	"$u" "$name" "$u" "$bindir" "$interval" >"$s/run"
printf '#!/bin/sh\nexec %s\n' "$logger" >"$s/log/run"
chmod 755 "$s/run" "$s/log/run"
{
	cat "$c/passwords"
	echo "$name:$h"
} >"$c/passwords.tmp"
sync "$c/passwords.tmp" 2>/dev/null || sync
mv "$c/passwords.tmp" "$c/passwords"
# postmaster@DOMAIN (RFC 5321 4.5.1) goes to the first account added.
[ -e "$c/postmaster" ] || echo "$name" >"$c/postmaster"
echo "$name@$domain $pw"
