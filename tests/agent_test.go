package tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"im2000/lib/wire"
	"im2000/lib/wire/rnaqp"
	"im2000/lib/wire/rnasp"
)

// agentHost is a recipient notification agent: im2000-agentd and
// im2000-queryd on one spool.
type agentHost struct {
	*env
	spool        string
	rnasp, rnaqp string
	mode         string
	procs        [2]*exec.Cmd // agentd, queryd
}

// restartAgentd kills agentd with SIGKILL and starts it again on its port.
func (h *agentHost) restartAgentd(t *testing.T) {
	h.procs[0].Process.Kill()
	h.procs[0].Wait()
	h.procs[0], _ = daemonEnv(t, h.vars, h.rnasp, filepath.Join(bin, "im2000-agentd"), "-l", h.rnasp)
}

func newAgentHost(t *testing.T, mode string, accounts ...string) *agentHost {
	return newAgentHostFor(t, mode, "example.net", "", accounts...)
}

// newAgentHostFor serves domain; rnaspAddr, if set, is where agentd listens.
func newAgentHostFor(t *testing.T, mode, domain, rnaspAddr string, accounts ...string) *agentHost {
	e := newEnv(t, accounts[0])
	e.setConf("me", domain)
	writePasswords(t, e, accounts...)
	h := &agentHost{env: e, spool: filepath.Join(t.TempDir(), "agent"), mode: mode}
	os.Mkdir(h.spool, 0o755)
	for _, a := range accounts {
		os.Mkdir(filepath.Join(h.spool, a), 0o700)
	}
	e.vars = append(e.vars, "IM2000_AGENT="+h.spool)
	for i, prog := range []string{"im2000-agentd", "im2000-queryd"} {
		port := strconv.Itoa(freePort(t))
		if i == 0 && rnaspAddr != "" {
			port = rnaspAddr[strings.LastIndex(rnaspAddr, ":")+1:]
		}
		addr := "127.0.0.1:" + port
		if mode == "tcpserver" {
			tcpserver, err := exec.LookPath("tcpserver")
			if err != nil {
				t.Fatal("tcpserver (ucspi-tcp) is not installed: run tests/deps.sh")
			}
			h.procs[i], _ = daemonEnv(t, e.vars, addr, tcpserver, "-RHl0", "127.0.0.1", port, filepath.Join(bin, prog))
		} else {
			h.procs[i], _ = daemonEnv(t, e.vars, addr, filepath.Join(bin, prog), "-l", addr)
		}
		if i == 0 {
			h.rnasp = addr
		} else {
			h.rnaqp = addr
		}
	}
	return h
}

func note(local, domain string, id byte) rnasp.Notification {
	return rnasp.Notification{
		StoreClear: wire.ServiceLocation{Domain: wire.DomainName{"store", "example", "org"}},
		Recipient:  mb(local, domain), ID: [16]byte{id}, Sender: "alice@example.org"}
}

func TestAgent(t *testing.T) {
	for _, mode := range []string{"tcpserver", "listener"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			h := newAgentHost(t, mode, "bob", "carol")
			s := dialProto(t, rnasp.Protocol, h.rnasp)
			batch := &rnasp.Notify{Notifications: []rnasp.Notification{
				note("bob", "example.net", 1), note("nobody", "example.net", 2),
				note("bob", "elsewhere.org", 3), note("carol", "Example.NET", 4), note("bob", "example.net", 5)}}
			res := call(t, s, batch, rnasp.NoError, false).Response.(*rnasp.NotifyOK).Results
			if len(res) != 5 || res[0] != rnasp.Accepted || res[1] != rnasp.NoUser || res[2] != rnasp.NoUser || res[3] != rnasp.Accepted || res[4] != rnasp.Accepted {
				t.Fatalf("results %v", res)
			}
			call(t, s, &rnasp.Notify{Notifications: []rnasp.Notification{note("bob", "example.net", 1)}}, rnasp.NoError, false) // a re-send

			q := dialProto(t, rnaqp.Protocol, h.rnaqp)
			call(t, q, rnaqp.RetrieveAndClear{}, rnaqp.ErrorNotAuthenticated, false)
			call(t, q, &rnaqp.Authenticate{Account: "bob", Password: "wrong"}, rnaqp.ErrorNotAuthenticated, false)
			call(t, q, &rnaqp.Authenticate{Account: "bob", Password: "bobpw"}, rnaqp.NoError, false)
			got := call(t, q, rnaqp.RetrieveAndClear{}, rnaqp.NoError, false).Response.(*rnaqp.RetrieveAndClearOK).Notifications
			if len(got) != 2 {
				t.Fatalf("bob got %d notifications, want 2 (the re-send must not add one)", len(got))
			}
			for _, n := range got {
				if n.Notification.Recipient.Local != "bob" || n.Notification.Sender != "alice@example.org" || n.Date == 0 || n.Submitter.Addr.String() != "127.0.0.1" {
					t.Fatalf("notification %+v", n)
				}
			}
			if again := call(t, q, rnaqp.RetrieveAndClear{}, rnaqp.NoError, false).Response.(*rnaqp.RetrieveAndClearOK).Notifications; len(again) != 0 {
				t.Fatalf("not cleared: %d", len(again))
			}
			qc := dialProto(t, rnaqp.Protocol, h.rnaqp)
			call(t, qc, &rnaqp.Authenticate{Account: "carol", Password: "carolpw"}, rnaqp.NoError, false)
			if c := call(t, qc, rnaqp.RetrieveAndClear{}, rnaqp.NoError, false).Response.(*rnaqp.RetrieveAndClearOK).Notifications; len(c) != 1 || c[0].Notification.ID != [16]byte{4} {
				t.Fatalf("carol got %+v", c)
			}
		})
	}
}

// TestAgentRefusesSenders: a real agentd answers refused for each
// notification whose sender is not a valid mailbox, accepts the others of
// the same Notify, and matches local parts without regard to case.
func TestAgentRefusesSenders(t *testing.T) {
	for _, mode := range []string{"tcpserver", "listener"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			h := newAgentHost(t, mode, "bob", "carol")
			with := func(n rnasp.Notification, sender string) rnasp.Notification { n.Sender = sender; return n }
			batch := []rnasp.Notification{
				note("bob", "example.net", 1),
				with(note("bob", "example.net", 2), "alice@example.org\nFrom evil@example.com"),
				with(note("bob", "example.net", 3), "alice@example.org\r"),
				with(note("bob", "example.net", 4), "alice\x1b[2J@example.org"),
				with(note("bob", "example.net", 5), "alice\x00@example.org"),
				with(note("bob", "example.net", 6), strings.Repeat("a", 1000-len("@example.org"))+"@example.org"),
				note("Bob", "EXAMPLE.NET", 7),
				with(note("bob", "example.net", 8), "golang"),           // a name, not a mailbox
				with(note("nobody", "example.net", 9), "alice\n@x.org"), // refused before the recipient is looked at
				note("nobody", "example.net", 10),
				note("CAROL", "example.net", 11),
			}
			if len(batch[5].Sender) != 1000 {
				t.Fatalf("sender of %d octets", len(batch[5].Sender))
			}
			want := []uint64{rnasp.Accepted, rnasp.Refused, rnasp.Refused, rnasp.Refused, rnasp.Refused, rnasp.Refused,
				rnasp.Accepted, rnasp.Refused, rnasp.Refused, rnasp.NoUser, rnasp.Accepted}
			s := dialProto(t, rnasp.Protocol, h.rnasp)
			res := call(t, s, &rnasp.Notify{Notifications: batch}, rnasp.NoError, false).Response.(*rnasp.NotifyOK).Results
			if !slices.Equal(res, want) {
				t.Fatalf("results %v, want %v", res, want)
			}
			for account, ids := range map[string][]byte{"bob": {1, 7}, "carol": {11}} {
				q := dialProto(t, rnaqp.Protocol, h.rnaqp)
				call(t, q, &rnaqp.Authenticate{Account: account, Password: account + "pw"}, rnaqp.NoError, false)
				var got []byte
				for _, n := range call(t, q, rnaqp.RetrieveAndClear{}, rnaqp.NoError, false).Response.(*rnaqp.RetrieveAndClearOK).Notifications {
					got = append(got, n.Notification.ID[0])
				}
				slices.Sort(got)
				if !slices.Equal(got, ids) {
					t.Fatalf("%s's spool held notifications %v, want %v", account, got, ids)
				}
			}
		})
	}
}
