package session

import (
	"context"
	"crypto/tls"
	"testing"
	"time"

	"im2000/lib/wire/msoap"
)

// BenchmarkSessionSetup: one-command sessions in cleartext, over TLS with
// a full handshake, and over TLS resuming (the listener's ticket keys).
func BenchmarkSessionSetup(b *testing.B) {
	addr, ca, _ := tlsServer(b, 5*time.Second, Limits{})
	plain, _, _ := testServer(b, 5*time.Second, Limits{}, false)
	one := func(c *Client, err error) {
		if err != nil {
			b.Fatal(err)
		}
		if _, err := Expect[msoap.AuthenticateOK](c, &msoap.Authenticate{Account: "a", Password: "pw"}); err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
	b.Run("cleartext", func(b *testing.B) {
		for range b.N {
			one(Dial(context.Background(), msoap.Protocol, plain, 5*time.Second))
		}
	})
	b.Run("tls-full", func(b *testing.B) {
		for range b.N {
			one(DialTLS(context.Background(), msoap.Protocol, addr, 5*time.Second, &tls.Config{RootCAs: ca.Pool()}))
		}
	})
	b.Run("tls-resumed", func(b *testing.B) {
		cfg := &tls.Config{RootCAs: ca.Pool(), ClientSessionCache: tls.NewLRUClientSessionCache(8)}
		one(DialTLS(context.Background(), msoap.Protocol, addr, 5*time.Second, cfg))
		b.ResetTimer()
		for range b.N {
			one(DialTLS(context.Background(), msoap.Protocol, addr, 5*time.Second, cfg))
		}
	})
}

// BenchmarkRoundTrip: commands on one session, in cleartext and over TLS
// (issue 16's goal: TLS at least 0.8x). Each PDU is one write, so one TLS
// record each way (strace -f -c: the same write count per command).
func BenchmarkRoundTrip(b *testing.B) {
	addr, ca, _ := tlsServer(b, 5*time.Second, Limits{})
	plain, _, _ := testServer(b, 5*time.Second, Limits{}, false)
	run := func(dial func() (*Client, error)) func(*testing.B) {
		return func(b *testing.B) {
			c, err := dial()
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			if _, err := Expect[msoap.AuthenticateOK](c, &msoap.Authenticate{Account: "a", Password: "pw"}); err != nil {
				b.Fatal(err)
			}
			if _, err := Expect[*msoap.SubmitEnvelopeOK](c, &msoap.SubmitEnvelope{}); err != nil {
				b.Fatal(err)
			}
			chunk := []byte("sixteen octets.\n")
			b.ResetTimer()
			for i := range b.N {
				cmd := &msoap.SubmitMsgChunk{Offset: uint64(i * len(chunk)), Data: chunk}
				if _, err := Expect[*msoap.SubmitMsgChunkOK](c, cmd); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	b.Run("cleartext", run(func() (*Client, error) { return Dial(context.Background(), msoap.Protocol, plain, 5*time.Second) }))
	b.Run("tls", run(func() (*Client, error) {
		return DialTLS(context.Background(), msoap.Protocol, addr, 5*time.Second, &tls.Config{RootCAs: ca.Pool()})
	}))
}
