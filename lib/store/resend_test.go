package store

import (
	"os"
	"testing"
	"time"
)

// TestResendFloor: the issue 17 review's resend loop. A resend makes an
// open recipient due now, but never sooner than the floor after its last
// attempt and never later than it was due; a resend that moves nothing
// does not put the message back in todo/ (notifyd's pass over its
// schedule) nor write to the journal.
func TestResendFloor(t *testing.T) {
	_, a := newAccount(t)
	env, err := inject(t, a, submission(t), "again", Limits{})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Truncate(time.Second)
	floor := 5 * time.Minute
	if err := a.Update(env.ID, func(_ *Envelope, st *Status) error {
		// Bob's agent took it ten seconds ago; next notification in an hour.
		st.Recipients[0] = RecipientStatus{ID: st.Recipients[0].ID, Notification: Notifying, Pinned: true, Attempts: 1, Last: now.Add(-10 * time.Second), Next: now.Add(time.Hour)}
		// Carol's server was down an hour ago; next retry in two.
		st.Recipients[1] = RecipientStatus{ID: st.Recipients[1].ID, Notification: NoServer, Pinned: true, Attempts: 3, Last: now.Add(-time.Hour), Next: now.Add(2 * time.Hour)}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	os.Rename(a.path("todo", env.ID), a.path("queue", env.ID)) // notifyd's intake took it
	r, err := a.Resend(env.ID, now, floor)
	if err != nil {
		t.Fatal(err)
	}
	bobDue := now.Add(-10 * time.Second).Add(floor)
	if r.Recipients != 2 || r.Held != 1 || !r.Until.Equal(bobDue) {
		t.Errorf("resend: %+v; want 2 recipients, 1 held until %v", r, bobDue)
	}
	st, err := a.Status(env.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Recipients[0].Next; !got.Equal(bobDue) {
		t.Errorf("bob, notified 10 s ago, due at %v; want %v (last + floor)", got, bobDue)
	}
	if got := st.Recipients[1].Next; !got.Equal(now) {
		t.Errorf("carol, tried an hour ago, due at %v; want now %v", got, now)
	}
	if _, err := os.Lstat(a.path("todo", env.ID)); err != nil {
		t.Errorf("a resend that moved due times did not put the message in todo/: %v", err)
	}

	// The loop: notifyd took it in again; every later resend changes
	// nothing, writes nothing, and leaves notifyd alone.
	os.Rename(a.path("todo", env.ID), a.path("queue", env.ID))
	size := func() int64 {
		var n int64
		for _, p := range []string{a.path("status", env.ID), a.journalPath(env.ID, st.gen)} {
			if fi, err := os.Stat(p); err == nil {
				n += fi.Size()
			}
		}
		return n
	}
	before := size()
	for i := 1; i <= 10; i++ {
		r, err := a.Resend(env.ID, now.Add(time.Duration(i)*time.Second), floor)
		if err != nil {
			t.Fatal(err)
		}
		if r.Held != 1 || !r.Until.Equal(bobDue) {
			t.Fatalf("resend %d: %+v", i, r)
		}
	}
	if _, err := os.Lstat(a.path("todo", env.ID)); err == nil {
		t.Errorf("resends that moved nothing put the message in todo/ again")
	}
	if after := size(); after != before {
		t.Errorf("resends that moved nothing wrote %d octets of status", after-before)
	}
	st, _ = a.Status(env.ID)
	if !st.Recipients[0].Next.Equal(bobDue) || !st.Recipients[1].Next.Equal(now) {
		t.Errorf("due times moved: bob %v, carol %v", st.Recipients[0].Next, st.Recipients[1].Next)
	}

	// Off the queue (notifyd dropped it): linked again even if nothing moved.
	os.Remove(a.path("queue", env.ID))
	if _, err := a.Resend(env.ID, now.Add(20*time.Second), floor); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(a.path("todo", env.ID)); err != nil {
		t.Errorf("a message off the queue was not linked again: %v", err)
	}

	// Past the floor, bob is due now.
	later := bobDue.Add(time.Minute)
	if err := a.Update(env.ID, func(_ *Envelope, st *Status) error { st.Recipients[0].Next = later.Add(time.Hour); return nil }); err != nil {
		t.Fatal(err)
	}
	if r, err := a.Resend(env.ID, later, floor); err != nil || r.Held != 0 {
		t.Errorf("resend past the floor: %+v, %v", r, err)
	}
}
