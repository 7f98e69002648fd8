package session

import (
	"errors"
	"io"
	"net"
	"sync/atomic"
	"testing"
)

// A SIGHUP keeps the count per address while sessionsperaddr stays, starts
// a new one when it changes, and leaves everything in force when the
// settings do not load.
func TestTextReloadSlots(t *testing.T) {
	type cfg struct{ perAddr int }
	next, loadErr := cfg{2}, error(nil)
	var failed, settings int
	srv := TextServer[cfg]{
		Load:   func() (cfg, error) { return next, loadErr },
		Limits: func(c cfg) Limits { return Limits{PerAddr: c.perAddr} },
		Log: TextLog{
			Settings:     func() { settings++ },
			ReloadFailed: func(error) { failed++ },
		},
	}
	var cur atomic.Pointer[textState[cfg]]
	lim := Limits{PerAddr: 2}
	cur.Store(&textState[cfg]{c: cfg{2}, lim: lim, slots: lim.SlotsFor(true)})
	first := cur.Load().slots
	srv.reload(&cur)
	if cur.Load().slots != first || settings != 1 {
		t.Fatalf("same sessionsperaddr: slots %p, want %p (settings logged %d times)", cur.Load().slots, first, settings)
	}
	next = cfg{3}
	srv.reload(&cur)
	if cur.Load().slots != first || first.(*MemSlots).n != 3 || cur.Load().lim.PerAddr != 3 {
		t.Fatalf("sessionsperaddr 2 to 3: the counts were not carried over under the new cap, or the limits not taken")
	}
	kept := cur.Load()
	loadErr = errors.New("broken")
	srv.reload(&cur)
	if cur.Load() != kept || failed != 1 || settings != 2 {
		t.Fatalf("a failed load: state changed %v, failures logged %d, settings logged %d", cur.Load() != kept, failed, settings)
	}
}

// Over the cap per address, the client reads BusyAddr and the connection
// is closed; the refusal is logged with the cap.
func TestTextAdmitRefuses(t *testing.T) {
	var refused []int
	srv := TextServer[int]{
		BusyAddr: "-ERR busy\r\n",
		Log:      TextLog{Refused: func(peer string, n int) { refused = append(refused, n) }},
	}
	slots := NewMemSlots(1)
	a, _ := net.Pipe()
	release, ok := srv.admit(a, "192.0.2.1:1000", 1, slots)
	if !ok {
		t.Fatal("the first session was refused")
	}
	defer release()
	b, client := net.Pipe()
	got := make(chan string, 1)
	go func() {
		r, _ := io.ReadAll(client)
		got <- string(r)
	}()
	if _, ok := srv.admit(b, "192.0.2.1:1001", 1, slots); ok {
		t.Fatal("a second session from the address got in over sessionsperaddr 1")
	}
	if r := <-got; r != "-ERR busy\r\n" || len(refused) != 1 || refused[0] != 1 {
		t.Fatalf("the refused client read %q; refusals logged %v", r, refused)
	}
}
