// The DNS client: one question asked of the resolvers over UDP, with
// retransmission and backoff, and over TCP when the answer is truncated.

package locate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// query asks one DNS question, retransmitting as a lossy network needs:
// at least 3 tries, one resolver after another, each try waiting twice as
// long as the one before, all within the Locator's Timeout (and the
// caller's ctx). An answer to an earlier try still counts while a later one
// is out, and a truncated answer is asked again over TCP. Only success and
// "no such name" are answers; SERVFAIL, REFUSED and the like send the next
// try at once, and when every try has failed the error says why.
func (l *Locator) query(ctx context.Context, name string, t dnsmessage.Type) (dnsmessage.RCode, []dnsmessage.Resource, error) {
	if len(l.Resolvers) == 0 {
		return 0, nil, errors.New("no DNS resolvers configured")
	}
	qname, err := dnsmessage.NewName(strings.TrimSuffix(name, ".") + ".")
	if err != nil {
		return 0, nil, err
	}
	id := uint16(rand.Uint32())
	q := dnsmessage.Message{
		Header:    dnsmessage.Header{ID: id, RecursionDesired: true},
		Questions: []dnsmessage.Question{{Name: qname, Type: t, Class: dnsmessage.ClassINET}},
	}
	packed, err := q.Pack()
	if err != nil {
		return 0, nil, err
	}
	if err := ctx.Err(); err != nil {
		return 0, nil, err
	}
	budget := l.Timeout
	if budget <= 0 {
		budget = 5 * time.Second
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < budget {
		budget = max(time.Until(dl), 0) // the tries fit the time the caller has
	}
	ctx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()
	x := newExchange()
	defer x.close()

	lastErr := errors.New("no answer")
	failed := map[string]bool{} // resolvers whose latest try failed outright
	// take reads what came from a resolver: an answer to return, a failure
	// (noted), or nothing to do with this question.
	take := func(ev event) (m *dnsmessage.Message, failure bool) {
		err := ev.err
		if err == nil {
			if m, err = reply(ev.b, id, qname, t); err != nil {
				return nil, false
			}
			if m.Truncated {
				m, err = exchangeTCP(ctx, ev.server, packed, id, qname, t)
			}
		}
		if err == nil {
			switch m.RCode {
			case dnsmessage.RCodeSuccess, dnsmessage.RCodeNameError:
				return m, false
			}
			err = fmt.Errorf("%s answered %v", ev.server, m.RCode)
		}
		lastErr = err
		failed[ev.server] = true
		return nil, true
	}
	waits := backoff(budget, max(minTries, len(l.Resolvers)))
	for try, wait := range waits {
		server := l.Resolvers[try%len(l.Resolvers)]
		delete(failed, server)
		if err := x.send(server, packed); err != nil {
			lastErr, failed[server] = err, true
			continue
		}
		timer := time.NewTimer(wait)
	waiting:
		for {
			select {
			case <-ctx.Done():
				timer.Stop()
				return 0, nil, fmt.Errorf("%v after %d tries (%w)", lastErr, try+1, ctx.Err())
			case <-timer.C:
				lastErr = fmt.Errorf("no answer from %s", server)
				break waiting
			case ev := <-x.events:
				m, failure := take(ev)
				if m != nil {
					timer.Stop()
					return m.RCode, m.Answers, nil
				}
				if failure && ev.server == server {
					timer.Stop()
					break waiting // this try failed: the next one now
				}
			}
		}
	}
	// The last try failed early: an earlier one may still be answered.
	pending := func() bool {
		for server := range x.conns {
			if !failed[server] {
				return true
			}
		}
		return false
	}
	for pending() {
		select {
		case <-ctx.Done():
			return 0, nil, fmt.Errorf("%v after %d tries (%w)", lastErr, len(waits), ctx.Err())
		case ev := <-x.events:
			if m, _ := take(ev); m != nil {
				return m.RCode, m.Answers, nil
			}
		}
	}
	return 0, nil, fmt.Errorf("%v after %d tries", lastErr, len(waits))
}

// minTries is how many times a DNS question is sent, at the least, before
// the lookup gives up; with more resolvers than that, each is asked once.
const minTries = 3

// backoff divides a query's time among n tries so that each try waits
// twice as long as the one before (up to 8 times the first) and the waits
// add up to budget: 3 tries in 5 s wait about 0.7, 1.4 and 2.9 s.
func backoff(budget time.Duration, n int) []time.Duration {
	weight := func(i int) int64 { return 1 << min(i, 3) }
	var total int64
	for i := range n {
		total += weight(i)
	}
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = time.Duration(int64(budget) / total * weight(i))
	}
	return out
}

// exchange is the UDP side of one query: a connected socket per resolver
// asked, kept open for the whole query so that a late answer to an early
// try is not lost, each read by a goroutine that hands what comes to events.
type exchange struct {
	conns  map[string]net.Conn
	events chan event
	done   chan struct{}
	wg     sync.WaitGroup
}

// event is a datagram from a resolver, or the error its socket reported
// (such as "connection refused" from an ICMP port unreachable).
type event struct {
	server string
	b      []byte
	err    error
}

func newExchange() *exchange {
	return &exchange{conns: map[string]net.Conn{}, events: make(chan event), done: make(chan struct{})}
}

func (x *exchange) send(server string, packed []byte) error {
	c, ok := x.conns[server]
	if !ok {
		var err error
		if c, err = net.Dial("udp", server); err != nil {
			return err
		}
		x.conns[server] = c
		x.wg.Add(1)
		go x.read(server, c)
	}
	_, err := c.Write(packed)
	return err
}

func (x *exchange) read(server string, c net.Conn) {
	defer x.wg.Done()
	bp := bufs.Get().(*[]byte)
	defer bufs.Put(bp)
	buf := *bp
	for {
		n, err := c.Read(buf)
		ev := event{server: server, err: err}
		if err == nil {
			ev.b = append([]byte(nil), buf[:n]...)
		} else if errors.Is(err, net.ErrClosed) {
			return
		}
		select {
		case x.events <- ev:
		case <-x.done:
			return
		}
		var errno syscall.Errno
		if err != nil && !errors.As(err, &errno) {
			return // not an ICMP report: the socket is of no more use
		}
	}
}

// bufs holds read buffers big enough for any datagram.
var bufs = sync.Pool{New: func() any { b := make([]byte, 65536); return &b }}

func (x *exchange) close() {
	close(x.done)
	for _, c := range x.conns {
		c.Close()
	}
	x.wg.Wait()
}

// exchangeTCP asks the question again over TCP, after a truncated answer.
func exchangeTCP(ctx context.Context, server string, packed []byte, id uint16, qname dnsmessage.Name, t dnsmessage.Type) (*dnsmessage.Message, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", server)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()
	framed := append([]byte{byte(len(packed) >> 8), byte(len(packed))}, packed...)
	if _, err := c.Write(framed); err != nil {
		return nil, err
	}
	var hdr [2]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return nil, err
	}
	buf := make([]byte, int(hdr[0])<<8|int(hdr[1]))
	if _, err := io.ReadFull(c, buf); err != nil {
		return nil, err
	}
	m, err := reply(buf, id, qname, t)
	if err != nil {
		return nil, err
	}
	if m.Truncated {
		return nil, fmt.Errorf("%s: truncated answer over TCP", server)
	}
	return m, nil
}

// reply decodes a DNS answer and checks that it answers the question asked.
func reply(b []byte, id uint16, qname dnsmessage.Name, t dnsmessage.Type) (*dnsmessage.Message, error) {
	var m dnsmessage.Message
	if err := m.Unpack(b); err != nil {
		return nil, err
	}
	if m.ID != id || !m.Response || len(m.Questions) != 1 || m.Questions[0].Name != qname || m.Questions[0].Type != t {
		return nil, errors.New("answer does not match the question")
	}
	return &m, nil
}
