#!/bin/sh
# Installs the Debian packages the tests drive (real programs, not fakes).
# As root it runs apt-get; otherwise it prints the one command to run.
set -eu
missing=""
need() { # need PACKAGE TEST-COMMAND...
	pkg=$1
	shift
	"$@" >/dev/null 2>&1 || missing="$missing $pkg"
}
need mutt command -v mutt
need util-linux command -v unshare
need groff-base command -v groff
need man-db command -v man
need ucspi-tcp command -v tcpserver
need daemontools command -v svscan
need swaks command -v swaks
need libnet-ssleay-perl perl -MNet::SSLeay -e1 # swaks --tls, --tlsc
need tcpdump sh -c 'PATH=$PATH:/usr/sbin command -v tcpdump' # the capture on lo of TLS sessions
need iproute2 sh -c 'PATH=$PATH:/usr/sbin:/sbin command -v ip' # a network namespace for a non-loopback client
need mpop command -v mpop
need python3-pyasn1 /usr/bin/python3 -c 'import pyasn1'
need nsd sh -c 'PATH=$PATH:/usr/sbin command -v nsd' # a real authoritative DNS server (lib/locate)
need postfix sh -c 'PATH=$PATH:/usr/sbin command -v postfix' # the SMTP world of the gateway tests (a private instance, as root)
need isync command -v mbsync # im2000-imapd's IMAP clients (tests/imap_clients_test.go)
need fetchmail command -v fetchmail
need tmux command -v tmux # mutt driven in a terminal
need apache2-utils command -v htpasswd # bcrypt for conf/add-account.sh and setup.sh (Python 3.13 has no crypt module)
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
