package session

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"im2000/lib/msgid"
	"im2000/lib/wire"
	"im2000/lib/wire/msoap"
)

// panicky panics on Track, in Abort after a Cancel, and is the toy otherwise.
type panicky struct {
	toy
	cancelled bool
}

func (h *panicky) Handle(s *Session, cmd wire.Body) Reply {
	switch cmd.(type) {
	case *msoap.Track:
		var ids []msgid.ID
		_ = ids[len(s.Account)] // index out of range
	case *msoap.Cancel:
		h.cancelled = true
		return Reply{Body: msoap.CancelOK{}}
	}
	return h.toy.Handle(s, cmd)
}

func (h *panicky) Abort(s *Session) {
	if h.cancelled {
		panic("abort after cancel")
	}
	h.toy.Abort(s)
}

// TestPanicInHandler: a handler's panic ends its session with
// errorinternalproblem and an alert; the server serves the next session.
func TestPanicInHandler(t *testing.T) {
	var mu sync.Mutex
	var logs strings.Builder
	f := start(t, 5*time.Second, 4, func(f *fixture) {
		f.srv.Log = func(format string, a ...any) {
			mu.Lock()
			defer mu.Unlock()
			fmt.Fprintf(&logs, format+"\n", a...)
		}
		f.srv.NewHandler = func(*Session) Handler {
			return &panicky{toy: toy{mu: &f.mu, committed: &f.committed, aborts: &f.aborts}}
		}
	})
	alerts := func() []string {
		mu.Lock()
		defer mu.Unlock()
		var out []string
		for _, l := range strings.Split(logs.String(), "\n") {
			if strings.HasPrefix(l, "alert: ") {
				out = append(out, l)
			}
		}
		return out
	}

	c := f.dial(t)
	status(t, c, &msoap.Authenticate{Account: "alice", Password: "pw"}, msoap.NoError, false)
	status(t, c, &msoap.Track{}, msoap.ErrorInternalProblem, true)
	expectClosed(t, c)
	if a := alerts(); len(a) != 1 || !strings.Contains(a[0], "alert: panic in MSOAP session with 127.0.0.1:") ||
		!strings.Contains(a[0], "index out of range [5] with length 0, at session.(*panicky).Handle (recover_test.go:") {
		t.Fatalf("alerts %q", a)
	}

	// A panic in Abort, after the session ends, is stopped too.
	c = f.dial(t)
	status(t, c, &msoap.Authenticate{Account: "alice", Password: "pw"}, msoap.NoError, false)
	status(t, c, &msoap.Cancel{}, msoap.NoError, false)
	c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for len(alerts()) < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if a := alerts(); len(a) != 2 || !strings.Contains(a[1], "panic in MSOAP session with") || !strings.Contains(a[1], ": abort after cancel, at ") {
		t.Fatalf("alerts %q", a)
	}

	c = f.dial(t)
	status(t, c, &msoap.Authenticate{Account: "alice", Password: "pw"}, msoap.NoError, false)
	status(t, c, &msoap.SubmitEnvelope{}, msoap.NoError, false)
}

// TestExpect: every answer but the one a command calls for is a protocol
// error (or a status error), never a panic; the session is usable after a
// wrong but well-formed alternative.
func TestExpect(t *testing.T) {
	answers := []struct {
		frame []byte
		want  string // "" for success
	}{
		{wire.MarshalResponse(false, msoap.NoError, &msoap.TrackOK{}), ""},
		{wire.MarshalResponse(false, msoap.NoError, wire.Null{}), "protocol error: answered *msoap.Track with wire.Null"},
		{wire.MarshalResponse(false, msoap.NoError, msoap.AuthenticateOK{}), "protocol error"},
		{wire.MarshalResponse(false, msoap.NoError, &msoap.SubmitEnvelopeOK{}), "protocol error"},
		{wire.MarshalResponse(false, msoap.NoError, &msoap.SubmitMsgChunkOK{}), "protocol error"},
		{wire.MarshalResponse(false, msoap.NoError, msoap.CancelOK{}), "protocol error"},
		{wire.MarshalResponse(true, msoap.ErrorNoSuchMessage, wire.Null{}), "MSOAP: errornosuchmessage (aborted)"},
		{wire.MarshalCommand(&msoap.Track{}), "protocol error: the server sent a command"},
		{[]byte("\x30\x03garbage"), "protocol error"},
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	done := make(chan struct{})
	defer close(done)
	go func() {
		conn, err := l.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		r := bufio.NewReader(conn)
		for _, a := range answers {
			if _, err := wire.ReadFrame(r, wire.DefaultMaxPDU); err != nil {
				return
			}
			wire.WriteFrame(conn, a.frame)
		}
		wire.ReadFrame(r, wire.DefaultMaxPDU)
		conn.Write([]byte{0x7f, 0xff, 0xff, 0xff}) // 2 GiB to come
		wire.ReadFrame(r, wire.DefaultMaxPDU)      // and then nothing
		<-done
	}()
	c, err := Dial(t.Context(), msoap.Protocol, l.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i, a := range answers {
		r, err := Expect[*msoap.TrackOK](c, &msoap.Track{})
		switch {
		case a.want == "" && (err != nil || r == nil):
			t.Errorf("answer %d: %v", i, err)
		case a.want != "" && (err == nil || !strings.Contains(err.Error(), a.want)):
			t.Errorf("answer %d: %v, want %q", i, err, a.want)
		case a.want != "" && strings.Contains(a.want, "protocol error") != errors.Is(err, ErrProtocol):
			t.Errorf("answer %d: %v is ErrProtocol: %v", i, err, errors.Is(err, ErrProtocol))
		}
	}
	if _, err := Expect[*msoap.TrackOK](c, &msoap.Track{}); !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), "longer than the limit") {
		t.Errorf("oversize length prefix: %v", err)
	}
	c.Timeout = 200 * time.Millisecond
	start := time.Now()
	var ne net.Error
	if _, err := Expect[*msoap.TrackOK](c, &msoap.Track{}); !errors.As(err, &ne) || !ne.Timeout() || time.Since(start) > 2*time.Second {
		t.Errorf("silent server: %v after %v", err, time.Since(start))
	}
}
