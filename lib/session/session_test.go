package session

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"im2000/lib/msgid"
	"im2000/lib/wire"
	"im2000/lib/wire/msoap"
)

// toy is a handler with MSOAP's shape: authenticate, then transactions of
// an envelope followed by chunks at consecutive offsets.
type toy struct {
	mu        *sync.Mutex
	committed *[]string
	aborts    *int
	inTx      bool
	buf       bytes.Buffer
}

func (h *toy) Handle(s *Session, cmd wire.Body) Reply {
	switch c := cmd.(type) {
	case *msoap.Authenticate:
		if c.Password != "pw" {
			return Reply{Status: msoap.ErrorNotAuthenticated}
		}
		s.Account = c.Account
		return Reply{Body: msoap.AuthenticateOK{}}
	case *msoap.SubmitEnvelope:
		if h.inTx {
			return Reply{Status: msoap.ErrorUnexpectedCommand, ForceAbort: true}
		}
		h.inTx = true
		return Reply{Body: &msoap.SubmitEnvelopeOK{}}
	case *msoap.SubmitMsgChunk:
		if !h.inTx || c.Offset != uint64(h.buf.Len()) {
			return Reply{Status: msoap.ErrorUnexpectedCommand, ForceAbort: true}
		}
		h.buf.Write(c.Data)
		if !c.IsLast {
			return Reply{Body: &msoap.SubmitMsgChunkOK{}}
		}
		h.mu.Lock()
		*h.committed = append(*h.committed, h.buf.String())
		h.mu.Unlock()
		h.inTx = false
		h.buf.Reset()
		id := msgid.New()
		return Reply{Body: &msoap.SubmitMsgChunkOK{ID: &id}}
	case *msoap.Track:
		time.Sleep(time.Millisecond)
		return Reply{Body: &msoap.TrackOK{}}
	}
	return Reply{Status: msoap.ErrorUnexpectedCommand, ForceAbort: true}
}

func (h *toy) Abort(*Session) {
	if h.inTx {
		h.mu.Lock()
		*h.aborts++
		h.mu.Unlock()
	}
	h.inTx = false
	h.buf.Reset()
}

type fixture struct {
	srv       *Server
	addr      string
	mu        sync.Mutex
	committed []string
	aborts    int
}

func start(t *testing.T, timeout time.Duration, maxConns int, setup ...func(*fixture)) *fixture {
	f := &fixture{}
	f.srv = &Server{Proto: msoap.Protocol, Timeout: timeout, MaxPDU: 4096, MaxConns: maxConns,
		NewHandler: func(*Session) Handler { return &toy{mu: &f.mu, committed: &f.committed, aborts: &f.aborts} },
		Log:        func(format string, a ...any) { t.Logf(format, a...) }}
	// Changes to the server before it serves: after, they would race with
	// its sessions.
	for _, s := range setup {
		s(f)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.addr = l.Addr().String()
	done := make(chan struct{})
	go func() { f.srv.ServeListener(l); close(done) }()
	t.Cleanup(func() {
		f.srv.Shutdown()
		l.Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("server did not stop")
		}
	})
	return f
}

func (f *fixture) dial(t *testing.T) *Client {
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return NewClient(c, msoap.Protocol, 5*time.Second)
}

func status(t *testing.T, c *Client, cmd wire.Body, want uint64, wantAbort bool) *wire.PDU {
	t.Helper()
	pdu, err := c.Call(cmd)
	var se *StatusError
	if err != nil && !errors.As(err, &se) {
		t.Fatalf("%T: %v", cmd, err)
	}
	if pdu.Status != want || pdu.ForceAbort != wantAbort {
		t.Fatalf("%T: status %s forceabort %v, want %s %v", cmd, msoap.Protocol.StatusName(pdu.Status), pdu.ForceAbort, msoap.Protocol.StatusName(want), wantAbort)
	}
	return pdu
}

// raw sends bytes as they are and reads one response.
func raw(t *testing.T, c *Client, b []byte) *wire.PDU {
	t.Helper()
	c.conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.conn.Write(b); err != nil {
		t.Fatal(err)
	}
	frame, err := wire.ReadFrame(c.r, wire.DefaultMaxPDU)
	if err != nil {
		t.Fatalf("no response: %v", err)
	}
	pdu, err := msoap.Protocol.Unmarshal(frame)
	if err != nil {
		t.Fatal(err)
	}
	return pdu
}

func expectClosed(t *testing.T, c *Client) {
	t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.r.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("session not closed: read %d, %v", n, err)
	}
}

func TestSessionStates(t *testing.T) {
	f := start(t, 5*time.Second, 4)
	c := f.dial(t)
	status(t, c, &msoap.Track{}, msoap.ErrorNotAuthenticated, false)
	status(t, c, &msoap.Authenticate{Account: "alice", Password: "wrong"}, msoap.ErrorNotAuthenticated, false)
	status(t, c, &msoap.Authenticate{Account: "alice", Password: "pw"}, msoap.NoError, false)
	status(t, c, &msoap.Authenticate{Account: "alice", Password: "pw"}, msoap.ErrorUnexpectedCommand, true)

	// A transaction in two chunks, then one with a gap that is aborted.
	status(t, c, &msoap.SubmitEnvelope{Lifetime: 60}, msoap.NoError, false)
	status(t, c, &msoap.SubmitMsgChunk{Offset: 0, Data: []byte("hello ")}, msoap.NoError, false)
	pdu := status(t, c, &msoap.SubmitMsgChunk{IsLast: true, Offset: 6, Data: []byte("world")}, msoap.NoError, false)
	if pdu.Response.(*msoap.SubmitMsgChunkOK).ID == nil {
		t.Fatal("no identifier for the last chunk")
	}
	status(t, c, &msoap.SubmitEnvelope{Lifetime: 60}, msoap.NoError, false)
	status(t, c, &msoap.SubmitMsgChunk{Offset: 0, Data: []byte("x")}, msoap.NoError, false)
	status(t, c, &msoap.SubmitMsgChunk{Offset: 5, Data: []byte("gap")}, msoap.ErrorUnexpectedCommand, true)

	// Garbage and a response PDU are malformed; the session goes on.
	if p := raw(t, c, []byte{0, 0, 0, 3, 1, 2, 3}); p.Status != msoap.ErrorMalformedPDU || !p.ForceAbort {
		t.Fatalf("garbage: %+v", p)
	}
	resp := wire.MarshalResponse(false, 0, wire.Null{})
	if p := raw(t, c, wire.AppendFrame(nil, resp)); p.Status != msoap.ErrorMalformedPDU || !p.ForceAbort {
		t.Fatalf("response as command: %+v", p)
	}
	status(t, c, &msoap.Track{}, msoap.NoError, false)

	// A close inside a transaction aborts it.
	status(t, c, &msoap.SubmitEnvelope{Lifetime: 60}, msoap.NoError, false)
	status(t, c, &msoap.SubmitMsgChunk{Offset: 0, Data: []byte("never")}, msoap.NoError, false)
	c.Close()
	waitFor(t, func() bool { f.mu.Lock(); defer f.mu.Unlock(); return f.aborts == 2 })
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.committed) != 1 || f.committed[0] != "hello world" {
		t.Fatalf("committed %q", f.committed)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for i := 0; i < 500; i++ {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("condition not met in 5s")
}

func TestIdleTimeout(t *testing.T) {
	f := start(t, 300*time.Millisecond, 4)
	c := f.dial(t)
	status(t, c, &msoap.Authenticate{Account: "a", Password: "pw"}, msoap.NoError, false)
	c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	frame, err := wire.ReadFrame(c.r, 4096)
	if err != nil {
		t.Fatal(err)
	}
	pdu, _ := msoap.Protocol.Unmarshal(frame)
	if pdu.Status != msoap.ErrorCommandTimeout || !pdu.ForceAbort {
		t.Fatalf("after idling: %+v", pdu)
	}
	expectClosed(t, c)
}

func TestOversizedLength(t *testing.T) {
	f := start(t, 5*time.Second, 4)
	c := f.dial(t)
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], 0xfffffff0)
	if p := raw(t, c, hdr[:]); p.Status != msoap.ErrorMalformedPDU || !p.ForceAbort {
		t.Fatalf("oversized: %+v", p)
	}
	expectClosed(t, c)
	status(t, f.dial(t), &msoap.Authenticate{Account: "a", Password: "pw"}, msoap.NoError, false)
}

// TestSlowClient sends a command one byte a second: the whole PDU does not
// arrive within the timeout, so it gets errorcommandtimeout; meanwhile a
// second session is served as usual.
func TestSlowClient(t *testing.T) {
	f := start(t, 2*time.Second, 4)
	slow := f.dial(t)
	frame := wire.AppendFrame(nil, wire.MarshalCommand(&msoap.Authenticate{Account: "slow", Password: "pw"}))
	done := make(chan *wire.PDU)
	go func() {
		for _, b := range frame {
			if _, err := slow.conn.Write([]byte{b}); err != nil {
				break
			}
			time.Sleep(time.Second)
		}
	}()
	go func() {
		slow.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		fr, err := wire.ReadFrame(slow.r, 4096)
		if err != nil {
			done <- nil
			return
		}
		p, _ := msoap.Protocol.Unmarshal(fr)
		done <- p
	}()
	fast := f.dial(t)
	status(t, fast, &msoap.Authenticate{Account: "fast", Password: "pw"}, msoap.NoError, false)
	served := 0
	for deadline := time.Now().Add(1500 * time.Millisecond); time.Now().Before(deadline); served++ {
		status(t, fast, &msoap.Track{}, msoap.NoError, false)
	}
	p := <-done
	if p == nil || p.Status != msoap.ErrorCommandTimeout || !p.ForceAbort {
		t.Fatalf("slow client got %+v", p)
	}
	if served < 50 {
		t.Fatalf("only %d commands served to the other session while the slow one dragged on", served)
	}
	t.Logf("%d round trips on another session meanwhile", served)
}

func TestConnectionLimit(t *testing.T) {
	f := start(t, 5*time.Second, 2)
	a, b := f.dial(t), f.dial(t)
	status(t, a, &msoap.Authenticate{Account: "a", Password: "pw"}, msoap.NoError, false)
	status(t, b, &msoap.Authenticate{Account: "b", Password: "pw"}, msoap.NoError, false)
	c := f.dial(t)
	c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	frame, err := wire.ReadFrame(c.r, 4096)
	if err != nil {
		t.Fatalf("refused session got no answer: %v", err)
	}
	if p, _ := msoap.Protocol.Unmarshal(frame); p.Status != msoap.ErrorServiceShutdown || !p.ForceAbort {
		t.Fatalf("refused session got %+v", p)
	}
	expectClosed(t, c)
	a.Close()
	waitFor(t, func() bool {
		d := f.dial(t)
		_, err := d.Call(&msoap.Authenticate{Account: "d", Password: "pw"})
		return err == nil
	})
}

func TestShutdown(t *testing.T) {
	f := start(t, 30*time.Second, 4)
	c := f.dial(t)
	status(t, c, &msoap.Authenticate{Account: "a", Password: "pw"}, msoap.NoError, false)
	f.srv.Shutdown()
	c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	frame, err := wire.ReadFrame(c.r, 4096)
	if err != nil {
		t.Fatal(err)
	}
	if p, _ := msoap.Protocol.Unmarshal(frame); p.Status != msoap.ErrorServiceShutdown {
		t.Fatalf("got %+v", p)
	}
	expectClosed(t, c)
}

// FuzzSession feeds arbitrary bytes to a session: the engine must answer
// and end without panicking or hanging.
func FuzzSession(f *testing.F) {
	auth := wire.AppendFrame(nil, wire.MarshalCommand(&msoap.Authenticate{Account: "a", Password: "pw"}))
	env := wire.AppendFrame(nil, wire.MarshalCommand(&msoap.SubmitEnvelope{Lifetime: 1}))
	chunk := wire.AppendFrame(nil, wire.MarshalCommand(&msoap.SubmitMsgChunk{IsLast: true, Data: []byte("x")}))
	f.Add(append(append(append([]byte{}, auth...), env...), chunk...))
	f.Add([]byte{0, 0, 0, 1, 0})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		var mu sync.Mutex
		var committed []string
		var aborts int
		srv := &Server{Proto: msoap.Protocol, Timeout: time.Second, MaxPDU: 1024, MaxConns: 1,
			NewHandler: func(*Session) Handler { return &toy{mu: &mu, committed: &committed, aborts: &aborts} }}
		client, server := net.Pipe()
		done := make(chan struct{})
		go func() { srv.Serve(server, &Session{}); close(done) }()
		go io.Copy(io.Discard, client)
		client.SetWriteDeadline(time.Now().Add(2 * time.Second))
		client.Write(data)
		client.Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("session did not end")
		}
	})
}
