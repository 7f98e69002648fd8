#!/bin/sh
# conf/setup.sh: a complete im2000 deployment for one user, without root:
# a message store and a notification agent for one domain, accounts with
# passwords, the routes between them, per-account settings, and service
# directories for a supervisor. Every connection is TLS: the servers run with
# -tls, and the routes name only the TLS forms (_msoaps._tcp, ...).
#
# usage: conf/setup.sh [-s daemontools|runit|s6] [-p baseport] [-d domain] [-b bindir]
#                      [-c cert.pem -k key.pem [-a ca.pem]]
#                      [-S smarthost [-U user -W passwordfile]] DIR account...
#
#   -c, -k   the servers' certificate chain and key (for domain, e.g. certbot's
#            fullchain.pem and privkey.pem); -a a CA file the clients trust
#            besides the system's. Without -c, setup.sh makes a private CA
#            (openssl) in DIR/tls/ and a certificate for domain, localhost and
#            127.0.0.1, and every account trusts that CA (tlsca).
#   -S       an SMTP relay (host or host:port) for recipients whose domain
#            has no IM2000 service (smarthost); -U the account to log in as
#            there and -W a file holding its password (smarthostuser,
#            smarthostpassword: a file, so it is not in ps).
#
#   DIR/conf/            the servers' configuration (man im2000-conf)
#   DIR/store/           the message store          DIR/agent/<account>/  the agent's spool
#   DIR/users/<account>/ each account's own settings (IM2000_CONF for inject, status, fetch, listd)
#   DIR/passwords.txt    the generated passwords (mode 600)
#   DIR/tls/             the private CA (ca.pem, ca.key) and the servers' tls.crt, tls.key
#   DIR/imap/            the IMAP users' mailboxes (imapstate)
#   DIR/service/         one service directory per daemon, each with log/: point svscan, runsvdir
#                        or s6-svscan at it
#
# Ports, all on 127.0.0.1: baseport MSOAP, +1 MSRAP, +2 RNASP, +3 RNAQP (default 4001-4004),
# +4 IMAP (STARTTLS), +5 IMAP over TLS, +6 the inbound SMTP gateway (STARTTLS), whose
# mail is archived under the account smtp (gatewayaccount), which has no password.
set -eu
supervisor=daemontools port=4001 domain=example.org bindir= cert= key= ca= smarthost= smuser= smpwfile=
gateway=smtp
usage="usage: $0 [-s daemontools|runit|s6] [-p baseport] [-d domain] [-b bindir] [-c cert -k key [-a ca]] [-S smarthost [-U user -W passwordfile]] DIR account..."
while getopts s:p:d:b:c:k:a:S:U:W: opt; do
	case $opt in
	s) supervisor=$OPTARG ;;
	p) port=$OPTARG ;;
	d) domain=$OPTARG ;;
	b) bindir=$OPTARG ;;
	c) cert=$OPTARG ;;
	k) key=$OPTARG ;;
	a) ca=$OPTARG ;;
	S) smarthost=$OPTARG ;;
	U) smuser=$OPTARG ;;
	W) smpwfile=$OPTARG ;;
	*) echo "$usage" >&2; exit 100 ;;
	esac
done
case $port in '' | *[!0-9]*) echo "setup.sh: -p takes a port number, not \"$port\"" >&2; exit 100 ;; esac
[ "$port" -ge 1 ] && [ "$port" -le 65529 ] || { echo "setup.sh: -p: the base port must be from 1 to 65529 (it uses seven ports)" >&2; exit 100; }
if [ -n "$smuser$smpwfile" ] && { [ -z "$smarthost" ] || [ -z "$smuser" ] || [ -z "$smpwfile" ]; }; then
	echo "setup.sh: -U and -W go together, and with -S: the smarthost's account and a file with its password" >&2
	exit 100
fi
case $smarthost in *[!A-Za-z0-9.:\[\]-]*) echo "setup.sh: -S: \"$smarthost\" is not a host or host:port" >&2; exit 100 ;; esac
# The port, when there is one, as im2000-notifyd checks it: a number from 1 to 65535.
case $smarthost in
*\]) smport= ;;
*\]:*) smport=${smarthost##*\]:} ;;
*:*:*) smport= ;;
*:*) smport=${smarthost##*:} ;;
*) smport= ;;
esac
case $smarthost in
*:) echo "setup.sh: -S: \"$smarthost\" names no port: write host or host:port" >&2; exit 100 ;;
esac
case $smport in
'') ;;
*[!0-9]* | 0* | ??????*) echo "setup.sh: -S: \"$smarthost\": the port must be a number from 1 to 65535" >&2; exit 100 ;;
*) [ "$smport" -le 65535 ] || { echo "setup.sh: -S: \"$smarthost\": the port must be a number from 1 to 65535" >&2; exit 100; } ;;
esac
[ -z "$smpwfile" ] || [ -r "$smpwfile" ] || { echo "setup.sh: cannot read $smpwfile" >&2; exit 100; }
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
for a in "$@"; do
	[ "$a" != "$gateway" ] || { echo "setup.sh: $gateway is the SMTP gateway's account (gatewayaccount), which has no password: choose another name" >&2; exit 100; }
done

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
imap=127.0.0.1:$((port + 4)) imaps=127.0.0.1:$((port + 5)) mx=127.0.0.1:$((port + 6))
umask 077
mkdir -p "$dir/conf/lists" "$dir/store" "$dir/agent" "$dir/users" "$dir/service" "$dir/imap"

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
echo "$domain" >"$dir/conf/rna"           # for im2000-imapd: the agent, by _rnaqps._tcp (TLS)
echo "$dir/imap" >"$dir/conf/imapstate"
# The SMTP gateway commits inbound mail into this account's archive; it has
# no password, as whoever could submit as it could make readers show any
# envelope sender. The readers' gateways default, gatewayaccount@me, is it.
echo "$gateway" >"$dir/conf/gatewayaccount"
echo "$1" >"$dir/conf/postmaster" # postmaster@DOMAIN (RFC 5321 4.5.1) is the first account's
mkdir -p "$dir/store/$gateway"
if [ -n "$smarthost" ]; then
	echo "$smarthost" >"$dir/conf/smarthost"
	if [ -n "$smuser" ]; then
		echo "$smuser" >"$dir/conf/smarthostuser"
		head -n 1 "$smpwfile" >"$dir/conf/smarthostpassword"
	fi
fi
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
# server SERVICE PROGRAM ADDR [FLAGS]: under tcpserver if there is one, else
# listening itself.
server() {
	if command -v tcpserver >/dev/null 2>&1; then
		service "$1" "IM2000_CONF=$dir/conf" "$(command -v tcpserver) -RHl0 -c 40 ${3%:*} ${3#*:} $bindir/$2${4:+ $4}"
	else
		service "$1" "IM2000_CONF=$dir/conf" "$bindir/$2 -l $3 -c 40${4:+ $4}"
	fi
}
server im2000-submitd im2000-submitd "$msoap" -tls
server im2000-retrieved im2000-retrieved "$msrap" -tls
server im2000-agentd im2000-agentd "$rnasp" -tls
server im2000-queryd im2000-queryd "$rnaqp" -tls
# IMAP: STARTTLS on one port (the password still never crosses in clear
# but from loopback), TLS from the first byte on the next.
server im2000-imapd im2000-imapd "$imap"
server im2000-imapd-tls im2000-imapd "$imaps" -tls
# The inbound SMTP gateway offers STARTTLS, as an MX does: the SMTP world's
# MTAs do not speak TLS from the first byte on port 25.
server im2000-gatewayd im2000-gatewayd "$mx"
service im2000-notifyd "IM2000_CONF=$dir/conf" "$bindir/im2000-notifyd"
for a in "$@"; do
	service "im2000-listd-$a" "IM2000_CONF=$dir/users/$a IM2000_ACCOUNT=$a" "$bindir/im2000-listd"
done

cat <<MSG
setup.sh: a deployment for $domain in $dir ($supervisor service directories).
Start it:      $(case $supervisor in daemontools) echo "svscan $dir/service &" ;; runit) echo "runsvdir $dir/service &" ;; s6) echo "s6-svscan $dir/service &" ;; esac)
Send as $1:    IM2000_CONF=$dir/users/$1 IM2000_ACCOUNT=$1 $bindir/im2000-inject someone@$domain < message
Fetch:         IM2000_CONF=$dir/users/ACCOUNT IM2000_ACCOUNT=ACCOUNT $bindir/im2000-fetch
IMAP:          $imap (STARTTLS) and $imaps (TLS), user ACCOUNT, its password
SMTP gateway:  $mx (an MX: mail from SMTP for ACCOUNT@$domain; STARTTLS)
Passwords are in $dir/passwords.txt. Every server speaks TLS only (certificate $cert${ca:+, CA $ca}),
or offers STARTTLS and takes no password before it from anywhere but loopback.
MSG
