package session

import (
	"io"
	"net"
	"sync/atomic"
	"time"
)

// LimitListener accepts at most n connections at a time; one beyond that
// gets refusal written to it and is closed at once, so that a client
// sees why rather than waiting in the kernel's backlog. A connection
// counts until it is closed.
func LimitListener(l net.Listener, n int, refusal string) net.Listener {
	return &limitListener{Listener: l, free: make(chan struct{}, n), refusal: refusal}
}

type limitListener struct {
	net.Listener
	free    chan struct{}
	refusal string
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		select {
		case l.free <- struct{}{}:
			return OnClose(c, func() { <-l.free }), nil
		default:
			c.SetWriteDeadline(time.Now().Add(time.Second))
			io.WriteString(c, l.refusal)
			c.Close()
		}
	}
}

// OnClose returns c calling f on its first Close.
func OnClose(c net.Conn, f func()) net.Conn { return &closeHook{Conn: c, f: f} }

type closeHook struct {
	net.Conn
	f    func()
	done atomic.Bool
}

func (c *closeHook) Close() error {
	if c.done.CompareAndSwap(false, true) {
		c.f()
	}
	return c.Conn.Close()
}
