#!/bin/sh
# conf/host-setup.sh: an im2000 deployment for a host on a network, without
# root: a message store and a notification agent for one mail domain, bound
# to the host's public addresses and published under its public name, with
# SMTP submission, POP3, IMAP, an inbound SMTP gateway (the domain's MX) and
# a fetch loop per account, all as supervised services on unprivileged
# ports. It prints the DNS records to publish.
#
# usage: conf/host-setup.sh [-s daemontools|runit|s6] [-b bindir] [-p baseport]
#        [-c tlscert -k tlskey] [-A cafile] [-r resolver]... [-P priority] [-i seconds]
#        [-S smarthost [-U user -W passwordfile]] DIR DOMAIN HOST ADDRESS...
#
#   DOMAIN   the mail domain (me): addresses are account@DOMAIN
#   HOST     the host's public name, the target of the SRV records
#   ADDRESS  the host's public addresses (IPv4 or IPv6): the servers listen
#            there, and on 127.0.0.1 for local users, and HOST's A/AAAA
#            records name them
#   -c, -k   a PEM certificate chain and key (tlscert, tlskey), valid for
#            DOMAIN (the name clients look up and verify) and HOST: the TLS
#            forms of the four services are served and published too, every
#            notification names the store's TLS form (storessl is DOMAIN),
#            and SMTP and POP3 offer STARTTLS/STLS and listen with TLS
#   -A       CA certificates (PEM) to trust besides the system's (tlsca),
#            for a private network's own CA
#   -r       a DNS server (ip:port) to ask instead of /etc/resolv.conf
#   -P       the SRV priority of this host (default 10); a second host for
#            the same domain with a higher number is its fail-over
#   -i       seconds between two runs of each account's fetch loop (60)
#   -S       an SMTP relay (host or host:port) for recipients whose domain
#            has no IM2000 service (smarthost); -U the account to log in as
#            there and -W a file holding its password (smarthostuser,
#            smarthostpassword: a file, so it is not in ps)
#
# Ports: baseport (default 4001) MSOAP, +1 MSRAP, +2 RNASP, +3 RNAQP,
# +4..+7 their TLS forms (with -c/-k), +8 SMTP submission, +9 POP3,
# +10 SMTP over TLS, +11 POP3 over TLS (with -c/-k), +12 IMAP (STARTTLS
# with -c/-k), +13 IMAP over TLS (with -c/-k), +14 the inbound SMTP
# gateway (the MX; the firewall maps port 25 to it). The gateway archives
# its mail under the account smtp (gatewayaccount), which has no password.
#
#   DIR/conf/            the servers' configuration (man im2000-conf); the
#                        store is published by name: storelocation is DOMAIN
#   DIR/store/ DIR/agent/ the message store and the agent's spools
#   DIR/pop3/ DIR/imap/  the POP3 and IMAP users' state (pop3state, imapstate)
#   DIR/users/<account>/ each account's own settings (conf/add-account.sh)
#   DIR/service/         service directories, each with log/
#   DIR/zone             the DNS records to publish, as printed
#   DIR/host.env         what conf/add-account.sh needs to know
#
# Accounts: conf/add-account.sh DIR NAME, conf/remove-account.sh DIR NAME.
set -eu
usage="usage: $0 [-s daemontools|runit|s6] [-b bindir] [-p baseport] [-c tlscert -k tlskey] [-A cafile] [-r resolver]... [-P priority] [-i seconds] [-S smarthost [-U user -W passwordfile]] DIR DOMAIN HOST ADDRESS..."
supervisor=daemontools port=4001 bindir= cert= key= ca= resolvers= priority=10 interval=60
smarthost= smuser= smpwfile= gateway=smtp
while getopts s:b:p:c:k:A:r:P:i:S:U:W: opt; do
	case $opt in
	s) supervisor=$OPTARG ;;
	b) bindir=$OPTARG ;;
	p) port=$OPTARG ;;
	c) cert=$OPTARG ;;
	k) key=$OPTARG ;;
	A) ca=$OPTARG ;;
	r) resolvers="$resolvers $OPTARG" ;;
	P) priority=$OPTARG ;;
	i) interval=$OPTARG ;;
	S) smarthost=$OPTARG ;;
	U) smuser=$OPTARG ;;
	W) smpwfile=$OPTARG ;;
	*) echo "$usage" >&2; exit 100 ;;
	esac
done
shift $((OPTIND - 1))
die() { echo "host-setup.sh: $2" >&2; exit "$1"; }
[ $# -ge 4 ] || die 100 "name a directory, the mail domain, the host's public name and at least one address
$usage"
case $supervisor in
daemontools) logger='multilog t ./main' scan=svscan ;;
runit) logger='svlogd -tt ./main' scan=runsvdir ;;
s6) logger='s6-log t ./main' scan=s6-svscan ;;
*) die 100 "-s: the supervisor must be daemontools, runit or s6" ;;
esac
for n in "$port" "$priority" "$interval"; do
	case $n in '' | *[!0-9]*) die 100 "-p, -P and -i take whole numbers, not \"$n\"" ;; esac
done
[ "$port" -ge 1024 ] && [ "$port" -le 65521 ] || die 100 "-p: the base port must be from 1024 to 65521 (it uses 15 ports): no port below 1024 is needed"
if [ -n "$smuser$smpwfile" ] && { [ -z "$smarthost" ] || [ -z "$smuser" ] || [ -z "$smpwfile" ]; }; then
	die 100 "-U and -W go together, and with -S: the smarthost's account and a file with its password"
fi
case $smarthost in *[!A-Za-z0-9.:\[\]-]*) die 100 "-S: \"$smarthost\" is not a host or host:port" ;; esac
[ -z "$smpwfile" ] || [ -r "$smpwfile" ] || die 100 "cannot read $smpwfile"
if [ -n "$cert$key" ] && { [ -z "$cert" ] || [ -z "$key" ]; }; then
	die 100 "-c and -k go together: the certificate chain and its key"
fi
valid_name() { # a host or domain name: letters, digits, hyphens and dots
	case $1 in '' | .* | *..* | *[!A-Za-z0-9.-]*) return 1 ;; esac
}
valid_name "$2" || die 100 "\"$2\" is not a domain name"
valid_name "$3" || die 100 "\"$3\" is not a host name"
[ -n "$bindir" ] || bindir=$(dirname "$(command -v im2000-submitd 2>/dev/null || echo /usr/local/bin/x)")
[ -x "$bindir/im2000-submitd" ] || die 111 "no im2000 programs in $bindir (make install, or -b bin)"
bindir=$(cd "$bindir" && pwd)
for f in "$cert" "$key" "$ca"; do
	[ -z "$f" ] || [ -r "$f" ] || die 111 "cannot read $f"
done
[ -z "$cert" ] || cert=$(cd "$(dirname "$cert")" && pwd)/$(basename "$cert")
[ -z "$key" ] || key=$(cd "$(dirname "$key")" && pwd)/$(basename "$key")
[ -z "$ca" ] || ca=$(cd "$(dirname "$ca")" && pwd)/$(basename "$ca")
mkdir -p "$1"
dir=$(cd "$1" && pwd)
domain=$(echo "$2" | tr A-Z a-z | sed 's/\.$//') host=$(echo "$3" | tr A-Z a-z | sed 's/\.$//')
shift 3
addrs="$*"
for a in $addrs; do
	case $a in
	*:*) ;; # IPv6
	*[!0-9.]* | '') die 100 "\"$a\" is not an IPv4 or IPv6 address" ;;
	esac
done
[ ! -e "$dir/conf" ] || die 100 "$dir/conf exists; not touching an existing deployment"

umask 077
mkdir -p "$dir/conf/lists" "$dir/store" "$dir/agent" "$dir/users" "$dir/mail" "$dir/service" "$dir/pop3" "$dir/imap"
c=$dir/conf
echo "$domain" >"$c/me"
echo "$dir/store" >"$c/store"
echo "$dir/agent" >"$c/agent"
echo "$domain" >"$c/storelocation" # by name: readers find the store through _msrap._tcp.$domain
echo "127.0.0.1:$((port + 3))" >"$c/rna" # for im2000-pop3d: the agent, on loopback
echo "$dir/pop3" >"$c/pop3state"
echo "$dir/imap" >"$c/imapstate"
# The SMTP gateway commits inbound mail into this account's archive; it has
# no password (add-account.sh refuses the name), as whoever could submit as
# it could make readers show any envelope sender. The readers' gateways
# default, gatewayaccount@me, is it.
echo "$gateway" >"$c/gatewayaccount"
mkdir -p "$dir/store/$gateway"
if [ -n "$smarthost" ]; then
	echo "$smarthost" >"$c/smarthost"
	if [ -n "$smuser" ]; then
		echo "$smuser" >"$c/smarthostuser"
		head -n 1 "$smpwfile" >"$c/smarthostpassword"
	fi
fi
: >"$c/passwords"
if [ -n "$resolvers" ]; then
	for r in $resolvers; do echo "$r"; done >"$c/resolvers"
fi
[ -z "$ca" ] || echo "$ca" >"$c/tlsca"
if [ -n "$cert" ]; then
	echo "$cert" >"$c/tlscert"
	echo "$key" >"$c/tlskey"
	# Notifications then carry storessl beside storelocation: readers are
	# told the store has a TLS form, and try _msraps._tcp.$domain first.
	echo "$domain" >"$c/storessl"
fi

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
# server NAME PORT [FLAGS]: NAME on PORT of each address and of loopback;
# under tcpserver where it can bind the address, listening itself otherwise.
server() {
	prog=$1 p=$2 flags=${3:-}
	suffix=${3:+-tls} n=0 all=$addrs
	echo " $addrs " | grep -q ' 127\.0\.0\.1 ' || all="$addrs 127.0.0.1"
	for a in $all; do
		case $a in 127.0.0.1) sname=$prog$suffix.lo ;; *) n=$((n + 1)) sname=$prog$suffix.$n ;; esac
		case $a in
		*:*) service "$sname" "IM2000_CONF=$c" "$bindir/$prog $flags -l [$a]:$p -c 40" ;;
		*) if command -v tcpserver >/dev/null 2>&1; then
			service "$sname" "IM2000_CONF=$c" "$(command -v tcpserver) -RHl0 -c 40 $a $p $bindir/$prog $flags"
		else
			service "$sname" "IM2000_CONF=$c" "$bindir/$prog $flags -l $a:$p -c 40"
		fi ;;
		esac
	done
}
server im2000-submitd $port
server im2000-retrieved $((port + 1))
server im2000-agentd $((port + 2))
server im2000-queryd $((port + 3))
server im2000-smtpd $((port + 8))
server im2000-pop3d $((port + 9))
server im2000-imapd $((port + 12))
server im2000-gatewayd $((port + 14))
if [ -n "$cert" ]; then
	server im2000-submitd $((port + 4)) -tls
	server im2000-retrieved $((port + 5)) -tls
	server im2000-agentd $((port + 6)) -tls
	server im2000-queryd $((port + 7)) -tls
	server im2000-smtpd $((port + 10)) -tls
	server im2000-pop3d $((port + 11)) -tls
	server im2000-imapd $((port + 13)) -tls
fi
service im2000-notifyd "IM2000_CONF=$c" "$bindir/im2000-notifyd"

# What add-account.sh needs, in sh syntax.
{
	echo "domain='$domain' host='$host' port='$port' bindir='$bindir' supervisor='$supervisor'"
	echo "logger='$logger' interval='$interval' gateway='$gateway'"
} >"$dir/host.env"

# The records to publish, absolute names, so they fit any zone's origin.
{
	echo "; im2000 for $domain on $host (conf/host-setup.sh): SRV priority $priority"
	for s in msoap:0 msrap:1 rnasp:2 rnaqp:3; do
		echo "_${s%:*}._tcp.$domain. 300 IN SRV $priority 0 $((port + ${s#*:})) $host."
	done
	if [ -n "$cert" ]; then
		for s in msoaps:4 msraps:5 rnasps:6 rnaqps:7; do
			echo "_${s%:*}._tcp.$domain. 300 IN SRV $priority 0 $((port + ${s#*:})) $host."
		done
	fi
	for a in $addrs; do
		case $a in *:*) echo "$host. 300 IN AAAA $a" ;; *) echo "$host. 300 IN A $a" ;; esac
	done
	echo "$domain. 300 IN MX 10 $host."
} >"$dir/zone"
chmod 644 "$dir/zone"

cat <<MSG
host-setup.sh: $domain on $host ($addrs) in $dir ($supervisor service directories).

Publish these records in the DNS (also in $dir/zone):

$(cat "$dir/zone")

Ports (TCP, on $addrs and 127.0.0.1):
  $port MSOAP (submit, track)     $((port + 1)) MSRAP (retrieve)     $((port + 2)) RNASP (notify)     $((port + 3)) RNAQP (query)
MSG
[ -z "$cert" ] || echo "  $((port + 4))-$((port + 7)) the same over TLS (_msoaps, _msraps, _rnasps, _rnaqps)"
echo "  $((port + 8)) SMTP submission$([ -z "$cert" ] || echo ' (STARTTLS)')     $((port + 9)) POP3$([ -z "$cert" ] || echo ' (STLS)')"
[ -z "$cert" ] || echo "  $((port + 10)) SMTP over TLS     $((port + 11)) POP3 over TLS"
echo "  $((port + 12)) IMAP$([ -z "$cert" ] || echo ' (STARTTLS)')$([ -z "$cert" ] || echo "     $((port + 13)) IMAP over TLS")"
echo "  $((port + 14)) SMTP gateway (inbound, the MX): have the firewall map port 25 to it"
echo "    (e.g. nft add rule ip nat prerouting tcp dport 25 redirect to :$((port + 14)))"
cat <<MSG
Other hosts need $((port + 1)) and $((port + 2)) (and their TLS forms) open, and 25 for SMTP; users need the rest.

Add an account:  conf/add-account.sh $dir NAME     (prints its password)
Start it:        $scan $dir/service &
Check it:        im2000-locate $domain            (from anywhere that sees the records)
MSG
