package conf

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Kind says how a setting's file is read.
type Kind int

const (
	Text   Kind = iota // the first line, trimmed
	Number             // the first line, a whole number of 0 or more
	List               // every line that is not blank or a # comment
	File               // a file other programs or people write (passwords, policies): named, not parsed here
)

// Setting is one row of the table of settings: the one place that says
// what a setting is called, what it defaults to, who reads it, and what
// it is for. im2000-conf(5) lists every row (a test holds it to that),
// and the programs read their settings by name through Num and Str, so a
// default is written down once.
type Setting struct {
	Name    string
	Kind    Kind
	Default string // what a missing or empty file means; "" for none
	Readers string // the programs (im2000- left off) that read it
	Help    string // one line
}

// table: keep it sorted by name. Defaults that depend on the machine
// (the host name, $HOME) are "" here and computed by their readers.
var table = []Setting{
	{"agent", Text, "", "agentd queryd gatewayd", "the notification agent's spool directory ($IM2000_AGENT overrides)"},
	// The agent's limits (see LIMITS in im2000-agentd(8) for why).
	// Notifications one submitting address may have the agent hold, for
	// all recipients: ten recipients' quotas. A store at one address
	// serving a large site's correspondents has a few thousand pending
	// at a time; a flood from one address stops here, and at half the
	// free disk (the share rule), well before it.
	{"agentaddrquota", Number, "100000", "agentd", "notifications one submitting address may have an agent hold at once (0: no limit)"},
	{"agentburst", Number, "10000", "agentd", "notifications one submitting address may send at once"},
	// A recipient away for weeks on a busy address gets a few thousand
	// notifications; 10,000 is room for that, and a flood stops there.
	// Full is temporary: the stores send again, so a full spool delays
	// mail. 16 MiB: 10,000 notifications of the largest common size (a
	// long sender and two locations make about 1,600 octets).
	{"agentquota", Number, "10000", "agentd", "notifications one recipient's spool may hold (0: no limit)"},
	{"agentquotabytes", Number, "16777216", "agentd", "octets of notifications one recipient's spool may hold (0: no limit)"},
	// 100 a second from one address, sustained, and ten of notifyd's
	// full batches (1,000 each) at once (agentburst): more than a busy
	// store sends to one agent, far less than a flood.
	{"agentrate", Number, "6000", "agentd", "notifications a minute per submitting address (0: no rate limit)"},
	// Room the agent leaves to the rest of the host (logs, the stores'
	// own queues) on the spool's filesystem.
	{"agentreserve", Number, "67108864", "agentd", "free octets an agent leaves on its spool's filesystem"},
	{"agentreserveinodes", Number, "10000", "agentd", "free inodes an agent leaves on its spool's filesystem"},
	{"agentsync", Number, "0", "agentd", "1: fsync every notification file as well as its directory"},
	{"authdelay", Number, "250", "submitd queryd smtpd pop3d imapd", "milliseconds a failed authentication waits at first"},
	{"authfrontends", Text, "", "submitd queryd", "addresses of front ends whose password checks are not delayed"},
	{"authmaxdelay", Number, "8000", "submitd queryd smtpd pop3d imapd", "the most milliseconds a failed authentication waits"},
	{"authtimeout", Number, "60", "every server", "seconds a session has to authenticate"},
	{"checkpassword", Text, "", "submitd queryd", "a checkpassword-compatible program to check passwords with"},
	{"cleartextauth", Number, "0", "every server", "1: take passwords over cleartext from any address"},
	{"concurrency", Number, "10", "notifyd", "agents notified at once"},
	{"databytes", Number, "16777216", "inject submitd smtpd fetch pop3d imapd gatewayd", "the largest message accepted or retrieved, in octets"},
	{"domains", List, "", "agentd gatewayd", "the domains whose recipients this agent takes (default: me)"},
	{"gatewayaccount", Text, "smtp", "gatewayd fetch pop3d imapd", "the account whose archive the SMTP gateway commits inbound mail into"},
	{"gateways", List, "", "fetch pop3d imapd", "SMTP gateway accounts whose envelope sender a reader shows (default: gatewayaccount@me)"},
	{"gatewayshare", Number, "10", "gatewayd", "percent of the gateway account's quota one client address (IPv6: a /64) may fill per lifetime (0: no limit)"},
	{"imapcachebytes", Number, "67108864", "imapd", "octets of fetched messages kept per user, so a body is served by the store once"},
	{"imappoll", Number, "10", "imapd", "seconds between asking the agent for new mail in IDLE and NOOP"},
	{"imapstate", Text, "", "imapd", "the directory of the IMAP users' mailboxes (UIDs, flags, cache)"},
	{"lifetime", Number, "2592000", "inject submitd smtpd gatewayd", "seconds a message is kept and notified"},
	{"listdstate", Text, "", "listd", "listd's state directory (default $HOME/.im2000-listd)"},
	{"listfile", List, "", "listd fetch pop3d imapd", "the lists a reader follows: list, store, optional backfill"},
	{"listinterval", Number, "300", "listd", "seconds between scans of the followed lists"},
	{"lists/", List, "", "inject submitd gatewayd", "lists/NAME: accounts that may post to list NAME hosted here (* for all; smtp lines for SMTP senders)"},
	{"maildir", Text, "", "fetch", "the Maildir fetch delivers into (default $HOME/Maildir)"},
	{"maxheld", Number, "1000", "fetch pop3d imapd", "the most notifications kept held for a user's decision"},
	{"maxlifetime", Number, "31536000", "submitd fetch pop3d imapd status", "the longest lifetime a submission gets; the longest a notification may keep failing"},
	{"maxrcpt", Number, "100", "inject submitd smtpd gatewayd", "the most distinct recipients of one message"},
	{"me", Text, "", "every program", "this host's mail domain (default: the host name)"},
	{"minlifetime", Number, "3600", "submitd", "the shortest lifetime a submission gets"},
	{"password", Text, "", "inject status fetch", "the account's password at the remote store or agent (mode 600)"},
	{"passwords", File, "", "submitd queryd", "account:bcrypt-hash lines of the accounts' passwords"},
	{"pop3state", Text, "", "pop3d", "the directory of the POP3 users' pending messages and settings"},
	{"postmaster", Text, "", "gatewayd", "the account postmaster@ each domain of the gateway goes to (default: an account named postmaster)"},
	{"quota", Number, "0", "inject submitd smtpd gatewayd", "the most octets one account's archive may hold (0: none)"},
	{"reapinterval", Number, "600", "notifyd", "seconds between removals of messages whose lifetime is over"},
	{"reclaim", List, "", "notifyd", "accounts (* for all) whose messages go once every recipient silenced"},
	{"remote", Text, "", "inject status", "the originator's store is elsewhere: its MSOAP server or domain"},
	{"resend", Number, "3600", "notifyd", "seconds between notifications of a recipient that has not silenced"},
	{"resendfloor", Number, "300", "status submitd", "seconds after a recipient's last notification before --resend may notify it again"},
	{"resolvers", List, "", "every client gatewayd", "DNS servers to ask (default: /etc/resolv.conf's)"},
	{"retrybase", Number, "60", "notifyd", "seconds before the first retry of a failed notification"},
	{"retrymax", Number, "3600", "notifyd", "the longest wait between retries"},
	{"rna", Text, "", "fetch pop3d imapd", "where the user's agent answers RNAQP: host:port or a domain"},
	{"rnasp", Text, "", "listd", "where listd delivers list notifications: host:port or a domain"},
	{"routes", List, "", "every client", "_service._tcp.domain host:port... lines that override DNS"},
	{"senderpolicy", File, "", "fetch pop3d imapd", "allow/deny/default rules deciding whose messages are fetched"},
	{"senders/", List, "", "inject submitd smtpd", "senders/ACCOUNT: addresses besides its own that ACCOUNT may put in From:"},
	{"sentlog", Text, "", "inject smtpd status", "where remote submissions are recorded, one line each naming its account (default $HOME/.im2000-sent; %a: the account)"},
	{"sessiondir", Text, "", "smtpd", "where smtpd with a remote store counts sessions per address"},
	{"sessionlifetime", Number, "3600", "every server", "seconds a session may last"},
	{"sessionsperaddr", Number, "10", "every server", "sessions at once from one address (IPv6 by /64; 0: no cap)"},
	{"smarthost", Text, "", "notifyd", "the SMTP relay (host or host:port) for recipients whose domain has no IM2000 service"},
	{"smarthostpassword", Text, "", "notifyd", "the password of smarthostuser at the smarthost"},
	{"smarthostuser", Text, "", "notifyd", "the account notifyd authenticates as at the smarthost (AUTH PLAIN, over TLS)"},
	{"store", Text, "", "store programs gatewayd", "the message store's directory ($IM2000_STORE overrides)"},
	{"storelocation", Text, "", "notifyd", "where recipients reach this store's MSRAP: host:port or a domain"},
	{"storessl", Text, "", "notifyd", "where recipients reach this store's MSRAP over TLS: host:port or a domain"},
	{"timeout", Number, "60", "every client gatewayd", "seconds a client waits for a connection and for each answer"},
	{"tlsca", Text, "", "every client", "path of PEM CA certificates trusted besides the system's"},
	{"tlscert", Text, "", "every server", "path of the PEM certificate chain for TLS, leaf first"},
	{"tlskey", Text, "", "every server", "path of the PEM private key of tlscert"},
	{"tlsrequire", List, "", "every client", "domains that must be reached over TLS"},
	{"tlsseen", Text, "tlsdomains", "every client", "directory remembering the domains reached over TLS (relative: in the config directory)"},
}

// Settings returns the table, sorted by name.
func Settings() []Setting {
	out := append([]Setting(nil), table...)
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Lookup returns the row of a setting; a per-name setting such as
// lists/NAME is found under its directory, "lists/".
func Lookup(name string) (Setting, bool) {
	if dir, _, ok := strings.Cut(name, "/"); ok {
		name = dir + "/"
	}
	for _, s := range table {
		if s.Name == name {
			return s, true
		}
	}
	return Setting{}, false
}

// row returns the row of a setting a program reads. A name missing from
// the table is a programming error, not a configuration one: the tests
// read every setting, so it never reaches a user.
func row(name string, kind Kind) Setting {
	s, ok := Lookup(name)
	if !ok || s.Kind != kind {
		panic(fmt.Sprintf("conf: setting %q is not in the table as that kind (lib/conf/settings.go)", name))
	}
	return s
}

// Default returns a Number setting's default, for code that needs it
// without a configuration directory.
func Default(name string) int64 {
	n, err := strconv.ParseInt(row(name, Number).Default, 10, 64)
	if err != nil {
		panic(fmt.Sprintf("conf: setting %q has a default that is not a number", name))
	}
	return n
}

// Num reads a Number setting, its default from the table.
func (d Dir) Num(name string) (int64, error) {
	return d.Int(name, Default(name))
}

// Str reads a Text setting, its default from the table.
func (d Dir) Str(name string) (string, error) {
	return d.String(name, row(name, Text).Default)
}
