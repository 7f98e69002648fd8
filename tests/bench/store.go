package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"

	"im2000/lib/msgid"
	"im2000/lib/session"
	"im2000/lib/store"
	"im2000/lib/wire"
	"im2000/lib/wire/msoap"
	"im2000/lib/wire/msrap"
)

func sized(n int) []byte {
	var b bytes.Buffer
	b.WriteString("From: alice@example.org\r\nTo: root@localhost\r\nSubject: bench\r\n\r\n")
	for b.Len() < n {
		b.WriteString("The quick brown fox jumps over the lazy dog, again and again.\r\n")
	}
	return b.Bytes()[:n]
}

type storeBench struct {
	dir          string
	msoap, msrap string
}

func must(err error) {
	if err != nil {
		log("%v", err)
		os.Exit(111)
	}
}

func startStore(tmp string) (*storeBench, func()) {
	b := &storeBench{dir: tmp}
	confDir, storeDir := filepath.Join(tmp, "conf"), filepath.Join(tmp, "store")
	must(os.MkdirAll(confDir, 0o755))
	must(os.MkdirAll(storeDir, 0o700))
	h, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	must(os.WriteFile(filepath.Join(confDir, "passwords"), []byte("alice:"+string(h)+"\n"), 0o600))
	must(os.WriteFile(filepath.Join(confDir, "me"), []byte("example.org\n"), 0o644))
	must(os.WriteFile(filepath.Join(confDir, "databytes"), []byte("33554432\n"), 0o644))
	os.Setenv("IM2000_CONF", confDir)
	os.Setenv("IM2000_STORE", storeDir)
	b.msoap, b.msrap = "127.0.0.1:"+freePort(), "127.0.0.1:"+freePort()
	bin, _ := filepath.Abs(*binDir)
	stop1 := serve(b.msoap, filepath.Join(bin, "im2000-submitd"), "-l", b.msoap, "-c", "20")
	stop2 := serve(b.msrap, filepath.Join(bin, "im2000-retrieved"), "-l", b.msrap, "-c", "20")
	return b, func() { stop1(); stop2() }
}

func (b *storeBench) login() (*session.Client, error) {
	c, err := session.Dial(context.Background(), msoap.Protocol, b.msoap, time.Minute)
	if err != nil {
		return nil, err
	}
	_, err = session.Expect[msoap.AuthenticateOK](c, &msoap.Authenticate{Account: "alice", Password: "pw"})
	return c, err
}

// submitN submits n copies of msg on one session, in 1 MiB chunks.
func (b *storeBench) submitN(n int, msg []byte) ([]msgid.ID, error) {
	c, err := b.login()
	if err != nil {
		return nil, err
	}
	defer c.Close()
	env := &msoap.SubmitEnvelope{Recipients: []wire.MailBox{{Local: "bob", Domain: wire.DomainName{"example", "net"}}}, Lifetime: 86400}
	var ids []msgid.ID
	for i := 0; i < n; i++ {
		if _, err := session.Expect[*msoap.SubmitEnvelopeOK](c, env); err != nil {
			return nil, err
		}
		for off := 0; ; off += 1 << 20 {
			end := min(off+1<<20, len(msg))
			r, err := session.Expect[*msoap.SubmitMsgChunkOK](c, &msoap.SubmitMsgChunk{IsLast: end == len(msg), Offset: uint64(off), Data: msg[off:end]})
			if err != nil {
				return nil, err
			}
			if end == len(msg) {
				if r.ID == nil {
					return nil, errors.New("the last chunk was answered without an identifier")
				}
				ids = append(ids, *r.ID)
				break
			}
		}
	}
	return ids, nil
}

// parallel runs f in k goroutines and returns the first error.
func parallel(k int, f func() error) error {
	var wg sync.WaitGroup
	errs := make(chan error, k)
	for i := 0; i < k; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); errs <- f() }()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// smtpPostfix sends n copies of msg to postfix over one SMTP session.
func smtpPostfix(n int, msg []byte) error {
	return smtpSession("127.0.0.1:25", "alice", "", "root@localhost", n, msg)
}

// rid finds bob's recipient identifier of a message in the store.
func (b *storeBench) rid(id msgid.ID) msgid.ID {
	s, err := store.Open(filepath.Join(b.dir, "store"))
	must(err)
	a, _ := s.Account("alice")
	m, err := a.Open(id)
	must(err)
	defer m.Close()
	return m.Env.Recipients[0].ID
}

func retrieveWhole(c *session.Client, rid msgid.ID) (int, error) {
	got := 0
	for {
		r, err := session.Expect[*msrap.RetrieveOK](c, &msrap.Retrieve{ID: rid, Type: msrap.All, Offset: uint64(got)})
		if err != nil {
			return got, err
		}
		got += len(r.Data)
		if uint64(got) >= r.Size || len(r.Data) == 0 {
			return got, nil
		}
	}
}

func benchStore() {
	stopPostfix, err := startPostfix()
	must(err)
	defer stopPostfix()
	tmp, _ := os.MkdirTemp("", "im2000-bench-store-")
	defer os.RemoveAll(tmp)
	b, stop := startStore(tmp)
	defer stop()

	msg10k, msg2k, msg10m := sized(10<<10), sized(2<<10), sized(10<<20)
	big, err := b.submitN(1, msg10m)
	must(err)
	small, err := b.submitN(1, msg2k)
	must(err)
	bigRid, smallRid := b.rid(big[0]), b.rid(small[0])
	reader, err := session.Dial(context.Background(), msrap.Protocol, b.msrap, time.Minute)
	must(err)
	defer reader.Close()

	const n = 200
	rows := []*row{
		{name: "MSOAP submissions, 10 KiB, one session (im2000-submitd -l)", unit: "msg/s", f: func() (float64, error) {
			return timed(n, func() error { _, err := b.submitN(n, msg10k); return err })
		}},
		{name: "SMTP to postfix, 10 KiB, one session", unit: "msg/s", f: func() (float64, error) {
			return timed(n, func() error { return smtpPostfix(n, msg10k) })
		}},
		{name: "MSOAP submissions, 10 KiB, 8 parallel sessions", unit: "msg/s", f: func() (float64, error) {
			return timed(8*n/4, func() error { return parallel(8, func() error { _, err := b.submitN(n/4, msg10k); return err }) })
		}},
		{name: "SMTP to postfix, 10 KiB, 8 parallel sessions", unit: "msg/s", f: func() (float64, error) {
			return timed(8*n/4, func() error { return parallel(8, func() error { return smtpPostfix(n/4, msg10k) }) })
		}},
		{name: "MSRAP retrieval of a 10 MiB message (1 MiB chunks)", unit: "MB/s", f: func() (float64, error) {
			return timed(3*float64(len(msg10m))/1e6, func() error {
				for i := 0; i < 3; i++ {
					if _, err := retrieveWhole(reader, bigRid); err != nil {
						return err
					}
				}
				return nil
			})
		}},
		{name: "MSRAP retrievals of a 2 KiB message, one session", unit: "retrievals/s", f: func() (float64, error) {
			return timed(2000, func() error {
				for i := 0; i < 2000; i++ {
					if _, err := retrieveWhole(reader, smallRid); err != nil {
						return err
					}
				}
				return nil
			})
		}},
	}
	measure(rows)
	table("Store services over loopback", rows)
	fmt.Printf("\nMSOAP / postfix SMTP, one session: **%.2f×**; 8 sessions: **%.2f×**\n",
		median(rows[0].rates)/median(rows[1].rates), median(rows[2].rates)/median(rows[3].rates))
}
