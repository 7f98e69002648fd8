package inbox

import (
	"sync"

	"im2000/lib/addr"
	"im2000/lib/conf"
)

// The gateways a reader trusts to say what SMTP envelope sender a message
// came with (lib/trace, im2000-gatewayd): the addresses in the setting
// gateways, one a line; without it, the gateway account (the setting
// gatewayaccount, default "smtp") at the reader's own domain (me), as
// the gateway that is the MX of the reader's domain runs beside it. Read
// once per process, from $IM2000_CONF (the directory fetch, pop3d and
// imapd open their Inbox with).
var (
	gatewaysOnce sync.Once
	gateways     map[addr.Mailbox]bool
)

func trustedGateway(sender addr.Mailbox) bool {
	gatewaysOnce.Do(func() {
		gateways = map[addr.Mailbox]bool{}
		d := conf.FromEnv()
		lines, err := d.Lines("gateways")
		if err != nil {
			logGatewaysUnread(err)
			return
		}
		if lines == nil {
			account, err1 := d.Str("gatewayaccount")
			me, err2 := d.Me()
			if err1 != nil || err2 != nil {
				return
			}
			lines = []string{account + "@" + me}
		}
		for _, l := range lines {
			if mb, err := addr.Parse(l); err == nil {
				gateways[mb] = true
			} else {
				logGatewayNotAddress(d.Path("gateways"), l)
			}
		}
	})
	return gateways[sender]
}
