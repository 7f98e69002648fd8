// The Locator a config directory describes: its routes file (like qmail's
// smtproutes) and its resolvers file, else /etc/resolv.conf.

package locate

import (
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"im2000/lib/conf"
	"im2000/lib/fail"
	"im2000/lib/tlsconf"
)

// FromConf reads the routes file and the resolvers file of a config
// directory; without a resolvers file, the nameservers of /etc/resolv.conf.
func FromConf(d conf.Dir) (*Locator, error) {
	l := &Locator{Routes: map[string][]string{}, Timeout: 5 * time.Second}
	lines, err := d.Lines("routes")
	if err != nil {
		return nil, err
	}
	for _, line := range lines {
		f := strings.Fields(line)
		if len(f) < 2 || !strings.HasPrefix(f[0], "_") {
			return nil, fmt.Errorf("%s: %q: want \"_service._tcp.domain host:port...\"", d.Path("routes"), line)
		}
		for _, a := range f[1:] {
			if _, _, err := net.SplitHostPort(a); err != nil {
				return nil, fmt.Errorf("%s: %q: %v", d.Path("routes"), line, err)
			}
		}
		l.Routes[strings.ToLower(strings.TrimSuffix(f[0], "."))] = f[1:]
	}
	if l.Resolvers, err = d.Lines("resolvers"); err != nil {
		return nil, err
	}
	if l.Resolvers == nil {
		l.Resolvers = resolvConf("/etc/resolv.conf")
	}
	if l.TLS, err = tlsconf.LoadClient(d); err != nil {
		return nil, err
	}
	l.Log = fail.Warning // a domain reached over TLS that cannot be remembered
	return l, nil
}

func resolvConf(path string) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "nameserver" {
			out = append(out, net.JoinHostPort(f[1], "53"))
		}
	}
	return out
}
