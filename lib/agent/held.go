package agent

import (
	"io"
	"os"
	"path/filepath"

	"im2000/lib/session"
	"im2000/lib/store"
	"im2000/lib/wire/rnaqp"
)

// What one submitting address has the spool hold, counted like an
// account (see counter), in <spool>/.held/:
//
//	KEY            all the address's notifications, for the PerAddr
//	               limit and the disk share of one address
//	KEY+ACCOUNT    the address's notifications for one account, for its
//	               share of the account's quota
//
// KEY is session.AddrKey (an IPv6 address by its /64); neither keys nor
// account names have a "+". Every notification file records its
// submitter (rnaqp's Submitter), so Remove knows which counters to take
// it off, and a recount finds them. Counters at 0 are removed, so the
// directory holds only addresses that have notifications kept. A count
// that says full is recounted at most every recountEvery, like an
// account's: the address's by reading every notification in the spool,
// the pair's by reading the account's. Notifications kept before these
// counters existed count for no address (until a recount finds them).

// maxNotificationFile bounds what a recount reads of one file: a
// notification is at most a few kilobytes (a 320-octet sender, two
// locations); anything longer is not one of ours.
const maxNotificationFile = 64 << 10

// SubmitterKey is the key of the address that handed over n, or "" when
// it has none.
func SubmitterKey(n *rnaqp.NotificationAndLocalData) string {
	if !n.Submitter.Addr.IsValid() {
		return ""
	}
	return session.AddrKey(n.Submitter.Addr)
}

// lockHeld locks the address's counter and then the pair's (always in
// this order, after the account's: no two sessions wait on each other).
func (s *Spool) lockHeld(key, account string) (holders, error) {
	dir := filepath.Join(s.Dir, ".held")
	addr, err := lockCounter(filepath.Join(dir, key), func() (int64, int64, error) { return s.countSpool(key) }, true)
	if err != nil {
		return holders{}, err
	}
	acctDir := filepath.Join(s.Dir, account)
	pair, err := lockCounter(filepath.Join(dir, key+"+"+account), func() (int64, int64, error) { return countDir(acctDir, key) }, true)
	if err != nil {
		addr.f.Close()
		return holders{}, err
	}
	return holders{addr: addr, pair: pair}, nil
}

// closeHeld saves and releases the address's counters, the pair's first.
func (h holders) closeHeld() error {
	if h.addr == nil {
		return nil
	}
	err := h.pair.close()
	if aerr := h.addr.close(); err == nil {
		err = aerr
	}
	return err
}

// countSpool counts the notifications from the address key names in
// every account's directory.
func (s *Spool) countSpool(key string) (count, bytes int64, err error) {
	ents, err := os.ReadDir(s.Dir)
	if err != nil {
		return 0, 0, err
	}
	for _, e := range ents {
		if !e.IsDir() || store.CheckAccount(e.Name()) != nil {
			continue
		}
		n, b, err := countDir(filepath.Join(s.Dir, e.Name()), key)
		if err != nil {
			return 0, 0, err
		}
		count, bytes = count+n, bytes+b
	}
	return count, bytes, nil
}

// submitterKey is the key of the submitter a notification file records,
// or "" for a file that is not a readable notification.
func submitterKey(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxNotificationFile+1))
	var n rnaqp.NotificationAndLocalData
	if err != nil || len(b) > maxNotificationFile || n.Unmarshal(b) != nil {
		return ""
	}
	return SubmitterKey(&n)
}
