package main

import (
	"fmt"
	"time"

	"im2000/lib/conf"
	"im2000/lib/store"
)

// Reaping (issue 17; DESIGN-NOTES.md "The archive over its life"): notifyd
// is the one long-running process of the store, so it removes the messages
// whose lifetime is over, every reapinterval seconds, and, in the accounts
// the reclaim setting names, the messages every recipient has silenced and
// unpinned. The first run is one interval after start, so as not to add a
// walk of every archive to the start-up rebuild. Both settings are read at
// each run: no SIGHUP needed.

// defaultReap is reapinterval's default: a message past its lifetime can
// no longer be retrieved anyway, so reaping only frees room and bounds how
// long a sender sees it in his list.
var defaultReap = time.Duration(conf.Default("reapinterval"))

func reapSettings(d conf.Dir) (time.Duration, func(string) bool, error) {
	n, err := d.Num("reapinterval")
	if err != nil {
		return 0, nil, err
	}
	if n < 1 || n > maxSeconds {
		return 0, nil, fmt.Errorf("%s: %d: write a number of seconds from 1 to %d", d.Path("reapinterval"), n, maxSeconds)
	}
	names, err := d.Lines("reclaim")
	if err != nil {
		return 0, nil, err
	}
	all := false
	set := map[string]bool{}
	for _, name := range names {
		if name == "*" {
			all = true
		}
		set[name] = true
	}
	return time.Duration(n) * time.Second, func(account string) bool { return all || set[account] }, nil
}

func reaper(d conf.Dir, st *store.Store, stop <-chan struct{}) {
	every, early, err := reapSettings(d)
	if err != nil {
		logReapDefaults(err, int64(defaultReap))
		every, early = defaultReap*time.Second, nil
	}
	for {
		select {
		case <-stop:
			return
		case <-time.After(every):
		}
		if e, f, err := reapSettings(d); err != nil {
			logReapKept(err)
		} else {
			every, early = e, f
		}
		r, err := st.Reap(time.Now(), early)
		if r != (store.Reaped{}) {
			logReaped(r.Expired, r.Reclaimed, r.Finished)
		}
		if err != nil {
			logReapFailed(err)
		}
	}
}
