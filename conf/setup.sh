#!/bin/sh
# conf/setup.sh: a complete im2000 deployment for one user, without root:
# a message store and a notification agent for one domain, accounts with
# passwords, the routes between them, per-account settings, and service
# directories for a supervisor. Every connection is TLS: the servers run with
# -tls, and the routes name only the TLS forms (_msoaps._tcp, ...).
#
# usage: conf/setup.sh [-s daemontools|runit|s6] [-p baseport] [-d domain] [-b bindir]
#                      [-c cert.pem -k key.pem [-a ca.pem]] DIR account...
#
#   -c, -k   the servers' certificate chain and key (for domain, e.g. certbot's
#            fullchain.pem and privkey.pem); -a a CA file the clients trust
#            besides the system's. Without -c, setup.sh makes a private CA
#            (openssl) in DIR/tls/ and a certificate for domain, localhost and
#            127.0.0.1, and every account trusts that CA (tlsca).
#
#   DIR/conf/            the servers' configuration (man im2000-conf)
#   DIR/store/           the message store          DIR/agent/<account>/  the agent's spool
#   DIR/users/<account>/ each account's own settings (IM2000_CONF for inject, status, fetch, listd)
#   DIR/passwords.txt    the generated passwords (mode 600)
#   DIR/tls/             the private CA (ca.pem, ca.key) and the servers' tls.crt, tls.key
#   DIR/service/         one service directory per daemon, each with log/: point svscan, runsvdir
#                        or s6-svscan at it
#
# Ports, all on 127.0.0.1: baseport MSOAP, +1 MSRAP, +2 RNASP, +3 RNAQP (default 4001-4004).
set -eu
supervisor=daemontools port=4001 domain=example.org bindir= cert= key= ca=
while getopts s:p:d:b:c:k:a: opt; do
	case $opt in
	s) supervisor=$OPTARG ;;
	p) port=$OPTARG ;;
	d) domain=$OPTARG ;;
	b) bindir=$OPTARG ;;
	c) cert=$OPTARG ;;
	k) key=$OPTARG ;;
	a) ca=$OPTARG ;;
	*) echo "usage: $0 [-s daemontools|runit|s6] [-p baseport] [-d domain] [-b bindir] [-c cert -k key [-a ca]] DIR account..." >&2; exit 100 ;;
	esac
done
if [ -n "$cert$key" ] && { [ -z "$cert" ] || [ -z "$key" ]; }; then
	echo "setup.sh: give both -c (certificate chain) and -k (its key), or neither for a private CA" >&2
	exit 100
fi
abspath() { (cd "$(dirname "$1")" && echo "$(pwd)/$(basename "$1")"); }
for f in $cert $key $ca; do
	[ -r "$f" ] || { echo "setup.sh: cannot read $f" >&2; exit 100; }
done
[ -z "$cert" ] || cert=$(abspath "$cert")
[ -z "$key" ] || key=$(abspath "$key")
[ -z "$ca" ] || ca=$(abspath "$ca")
shift $((OPTIND - 1))
[ $# -ge 2 ] || { echo "setup.sh: name a directory and at least one account" >&2; exit 100; }
case $supervisor in
daemontools) logger='multilog t ./main' ;;
runit) logger='svlogd -tt ./main' ;;
s6) logger='s6-log t ./main' ;;
*) echo "setup.sh: supervisor must be daemontools, runit or s6" >&2; exit 100 ;;
esac
[ -n "$bindir" ] || bindir=$(dirname "$(command -v im2000-submitd 2>/dev/null || echo /usr/local/bin/x)")
[ -x "$bindir/im2000-submitd" ] || { echo "setup.sh: no im2000 programs in $bindir (make install, or -b bin)" >&2; exit 111; }
bindir=$(cd "$bindir" && pwd)
mkdir -p "$1"
dir=$(cd "$1" && pwd)
shift
[ ! -e "$dir/conf" ] || { echo "setup.sh: $dir/conf exists; not touching an existing deployment" >&2; exit 100; }

# bcrypt: htpasswd (apache2-utils) or Python's crypt module.
hash() {
	if command -v htpasswd >/dev/null 2>&1; then
		htpasswd -nbB x "$1" | cut -d: -f2
	elif python3 -W ignore -c 'import crypt' 2>/dev/null; then
		python3 -W ignore -c 'import crypt, sys; print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH)))' "$1"
	else
		echo "setup.sh: need htpasswd (apache2-utils) or python3 to hash passwords" >&2
		exit 111
	fi
}

msoap=127.0.0.1:$port msrap=127.0.0.1:$((port + 1)) rnasp=127.0.0.1:$((port + 2)) rnaqp=127.0.0.1:$((port + 3))
umask 077
mkdir -p "$dir/conf/lists" "$dir/store" "$dir/agent" "$dir/users" "$dir/service"

# TLS: the given certificate, or a private CA and a certificate from it. The
# clients verify the domain they look up (im2000-conf(5), tlsca), so the
# certificate names the domain; localhost and 127.0.0.1 are for old clients
# (mutt, mpop) pointed at the shims by address.
if [ -z "$cert" ]; then
	command -v openssl >/dev/null 2>&1 || { echo "setup.sh: need openssl to make a private CA (or give -c and -k)" >&2; exit 111; }
	t=$dir/tls
	mkdir -p "$t"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
		-subj "/CN=im2000 private CA for $domain" -addext basicConstraints=critical,CA:TRUE \
		-addext keyUsage=critical,keyCertSign,cRLSign -keyout "$t/ca.key" -out "$t/ca.pem" 2>"$t/openssl.log" &&
		openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$domain" \
			-keyout "$t/tls.key" -out "$t/tls.csr" 2>>"$t/openssl.log" &&
		printf 'subjectAltName=DNS:%s,DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\nbasicConstraints=CA:FALSE\n' "$domain" >"$t/ext" &&
		openssl x509 -req -in "$t/tls.csr" -CA "$t/ca.pem" -CAkey "$t/ca.key" -CAcreateserial -days 825 \
			-extfile "$t/ext" -out "$t/tls.crt" 2>>"$t/openssl.log" ||
		{ echo "setup.sh: openssl failed making the private CA; see $t/openssl.log" >&2; exit 111; }
	rm -f "$t/tls.csr" "$t/ext"
	cert=$t/tls.crt key=$t/tls.key ca=$t/ca.pem
fi
echo "$cert" >"$dir/conf/tlscert"
echo "$key" >"$dir/conf/tlskey"
[ -z "$ca" ] || echo "$ca" >"$dir/conf/tlsca"

echo "$domain" >"$dir/conf/me"
echo "$dir/store" >"$dir/conf/store"
echo "$dir/agent" >"$dir/conf/agent"
echo "$domain" >"$dir/conf/storelocation" # readers locate _msraps._tcp.$domain
echo "$msrap" >"$dir/conf/storessl"       # verified for the sender's domain
printf '_rnasps._tcp.%s %s\n_rnaqps._tcp.%s %s\n_msraps._tcp.%s %s\n_msoaps._tcp.%s %s\n' \
	"$domain" "$rnasp" "$domain" "$rnaqp" "$domain" "$msrap" "$domain" "$msoap" >"$dir/conf/routes"
: >"$dir/conf/passwords"
: >"$dir/passwords.txt"
for a in "$@"; do
	pw=$(od -An -N9 -tx1 /dev/urandom | tr -d ' \n')
	echo "$a:$(hash "$pw")" >>"$dir/conf/passwords"
	echo "$a $pw" >>"$dir/passwords.txt"
	mkdir -p "$dir/agent/$a" "$dir/users/$a" "$dir/mail/$a"
	u=$dir/users/$a
	echo "$domain" >"$u/me"
	echo "$dir/store" >"$u/store"
	echo "$domain" >"$u/rna"   # located by _rnaqps._tcp: TLS
	echo "$domain" >"$u/rnasp" # located by _rnasps._tcp: TLS
	[ -z "$ca" ] || echo "$ca" >"$u/tlsca"
	# inject writes this account's archive itself and checks list posting
	# rights in lists/ of its own settings: the store's, one list of them.
	ln -s ../../conf/lists "$u/lists"
	echo "$pw" >"$u/password"
	echo "$dir/mail/$a" >"$u/maildir"
	cp "$dir/conf/routes" "$u/routes"
	echo "# list store [backfill], e.g.: announce $domain" >"$u/listfile"
	echo "$dir/users/$a/listd" >"$u/listdstate"
	echo "$dir/users/$a/sent" >"$u/sentlog"
done
echo "$1" >"$dir/conf/lists/announce" # the first account may post to the list 'announce'

# service NAME ENV COMMAND...: a service directory with a logger.
service() {
	name=$1 env=$2
	shift 2
	s=$dir/service/$name
	mkdir -p "$s/log/main"
	{
		echo '#!/bin/sh'
		echo 'exec 2>&1'
		echo "exec env $env $*"
	} >"$s/run"
	{
		echo '#!/bin/sh'
		echo "exec $logger"
	} >"$s/log/run"
	chmod 755 "$s/run" "$s/log/run"
}
server() { # server NAME ADDR: under tcpserver if there is one, else listening itself
	if command -v tcpserver >/dev/null 2>&1; then
		service "$1" "IM2000_CONF=$dir/conf" "$(command -v tcpserver) -RHl0 -c 40 ${2%:*} ${2#*:} $bindir/$1 -tls"
	else
		service "$1" "IM2000_CONF=$dir/conf" "$bindir/$1 -l $2 -c 40 -tls"
	fi
}
server im2000-submitd "$msoap"
server im2000-retrieved "$msrap"
server im2000-agentd "$rnasp"
server im2000-queryd "$rnaqp"
service im2000-notifyd "IM2000_CONF=$dir/conf" "$bindir/im2000-notifyd"
for a in "$@"; do
	service "im2000-listd-$a" "IM2000_CONF=$dir/users/$a IM2000_ACCOUNT=$a" "$bindir/im2000-listd"
done

cat <<MSG
setup.sh: a deployment for $domain in $dir ($supervisor service directories).
Start it:      $(case $supervisor in daemontools) echo "svscan $dir/service &" ;; runit) echo "runsvdir $dir/service &" ;; s6) echo "s6-svscan $dir/service &" ;; esac)
Send as $1:    IM2000_CONF=$dir/users/$1 IM2000_ACCOUNT=$1 $bindir/im2000-inject someone@$domain < message
Fetch:         IM2000_CONF=$dir/users/ACCOUNT IM2000_ACCOUNT=ACCOUNT $bindir/im2000-fetch
Passwords are in $dir/passwords.txt. Every server speaks TLS only (certificate $cert${ca:+, CA $ca}).
MSG
