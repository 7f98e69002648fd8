// Command im2000-retrieved is the message store's MSRAP server: recipients
// retrieve the messages their identifiers open, confirm them (Silence),
// release them (UnPin), and scan the lists the store hosts. It reads the
// store and writes nothing but status sidecars. See man/im2000-retrieved.8.
package main

import (
	"errors"
	"io"
	"net/netip"
	"os"
	"strings"
	"time"

	"im2000/lib/addr"
	"im2000/lib/conf"
	"im2000/lib/mailmsg"
	"im2000/lib/msgid"
	"im2000/lib/session"
	"im2000/lib/store"
	"im2000/lib/wire"
	"im2000/lib/wire/msrap"
)

const usage = `usage: im2000-retrieved [-l addr:port] [-c n] [-t seconds] [-m bytes] [-tls]
  Serves MSRAP for the store in $IM2000_STORE (or the store file of the
  configuration directory $IM2000_CONF): one session on stdin/stdout, as
  under tcpserver, or with -l as a listener.
` + session.FlagUsage

// maxScan bounds the identifiers one ScanList answer carries; the client
// goes on from the endtime it gets.
const maxScan = 10000

// server is what every session shares, whatever a SIGHUP loads.
type server struct {
	maxChunk uint64
	batches  batches // status changes written together (batch.go)
}

// handler is one session.
type handler struct {
	*server
	st *store.Store // the one in force when the session began
	// Read statuses that could not be recorded (a full disk), by
	// recipient identifier: tried again before each command and at the
	// end of the session, and, failing that, at the next retrieval, which
	// finds the status still behind. A retrieval never waits on them.
	pending map[msgid.ID]store.Read
}

// maxPending bounds the statuses a session keeps to try again.
const maxPending = 64

func main() {
	f := session.ParseFlags("im2000-retrieved", usage, os.Args[1:])
	d := conf.FromEnv()
	sv := &server{maxChunk: uint64(f.MaxPDU - 4096), // room for the rest of the PDU
		batches: batches{groups: map[batchKey]*group{}}}
	// The store in force: a listener's SIGHUP opens it again (and reads
	// the session limits), and each session keeps the one it began with.
	srv := &session.Server{Proto: msrap.Protocol, Log: logSession}
	err := session.RunReloading(srv, f, d, session.Reloading[*store.Store]{
		Load: func() (*store.Store, session.Limits, error) { return load(d) },
		NewHandler: func(st *store.Store, _ *session.Session) session.Handler {
			return &handler{server: sv, st: st, pending: map[msgid.ID]store.Read{}}
		},
		Settings: func() { logSettings(d) },
		Failed:   logReloadFailed,
	})
	if err != nil {
		logFatal(err)
	}
}

// load opens the store and reads the session limits: at start, and again
// on a listener's SIGHUP.
func load(d conf.Dir) (*store.Store, session.Limits, error) {
	root, err := d.Store()
	if err != nil {
		return nil, session.Limits{}, err
	}
	st, err := store.Open(root)
	if err != nil {
		return nil, session.Limits{}, err
	}
	for _, w := range st.Warnings {
		logStoreWarning(w)
	}
	lim, err := session.ServerLimits(d, root, msrap.Protocol.Name)
	return st, lim, err
}

// Abort is called when the session ends (MSRAP has no transactions): a
// last try at the read statuses not yet recorded.
func (h *handler) Abort(s *session.Session) { h.retryPending(s) }

func (h *handler) Handle(s *session.Session, cmd wire.Body) session.Reply {
	var rep session.Reply
	var err error
	h.retryPending(s)
	switch c := cmd.(type) {
	case *msrap.ScanList:
		rep, err = h.scan(c)
	case *msrap.Retrieve:
		rep, err = h.retrieve(s, c)
	case *msrap.QuerySize:
		rep, err = h.withMessage(c.ID, func(m *store.Message, _ int) (session.Reply, error) {
			return session.Reply{Body: &msrap.QuerySizeOK{Size: uint64(m.Size())}}, nil
		})
	case *msrap.Silence:
		// A silenced message was read, by definition (the recipient has
		// it): so a read status a full disk kept from being written, and
		// that fetch will not retrieve again for, is recorded here.
		rep, err = h.setStatus(s, c.ID, logSilenced, func(r *store.RecipientStatus) {
			r.Notification, r.Next = store.Silenced, time.Time{}
			r.Read = max(r.Read, store.ReadAll)
		}, msrap.SilenceOK{})
	case *msrap.UnPin:
		rep, err = h.setStatus(s, c.ID, logUnpinned, func(r *store.RecipientStatus) { r.Pinned = false }, msrap.UnPinOK{})
	default:
		return session.Reply{Status: msrap.ErrorUnexpectedCommand, ForceAbort: true}
	}
	if errors.Is(err, store.ErrNoSuch) {
		return session.Reply{Status: msrap.ErrorNoSuchMessage}
	}
	if err != nil {
		logStoreError(s.Remote, err)
		return session.Reply{Status: msrap.ErrorInternalProblem}
	}
	return rep
}

// withMessage runs fn on the message id opens, with the id's index.
func (h *handler) withMessage(id msgid.ID, fn func(*store.Message, int) (session.Reply, error)) (session.Reply, error) {
	m, i, err := h.st.Lookup(id, time.Now())
	if err != nil {
		return session.Reply{}, err
	}
	defer m.Close()
	return fn(m, i)
}

// setStatus changes the recipient's own status line; for a list
// identifier there is nothing to change.
func (h *handler) setStatus(s *session.Session, id msgid.ID, log func(netip.AddrPort, msgid.ID, string, msgid.ID, addr.Mailbox), change func(*store.RecipientStatus), ok wire.Body) (session.Reply, error) {
	return h.withMessage(id, func(m *store.Message, i int) (session.Reply, error) {
		if i < len(m.Env.Recipients) {
			if err := h.batches.update(m, i, change); err != nil {
				return session.Reply{}, err
			}
			log(s.Remote, id, m.Account, m.Env.ID, m.Env.Recipients[i].Addr)
		}
		return session.Reply{Body: ok}, nil
	})
}

var readFor = map[uint64]store.Read{msrap.SummaryOnly: store.Summarised, msrap.HeadersOnly: store.ReadHeaders, msrap.All: store.ReadAll}

func (h *handler) retrieve(s *session.Session, c *msrap.Retrieve) (session.Reply, error) {
	return h.withMessage(c.ID, func(m *store.Message, i int) (session.Reply, error) {
		var part io.ReaderAt
		var size int64
		switch c.Type {
		case msrap.Nothing:
			return session.Reply{Body: &msrap.RetrieveOK{}}, nil
		case msrap.All:
			part, size = m.Body(), m.Size()
		default:
			hdr, err := m.Header()
			if err != nil {
				return session.Reply{}, err
			}
			if c.Type == msrap.SummaryOnly {
				hdr = mailmsg.Summary(hdr)
			}
			part, size = strings.NewReader(string(hdr)), int64(len(hdr))
		}
		n := c.Length
		if n == 0 || n > h.maxChunk {
			n = h.maxChunk
		}
		if c.Offset >= uint64(size) {
			n = 0
		} else if rest := uint64(size) - c.Offset; n > rest {
			n = rest
		}
		data := make([]byte, n)
		if _, err := part.ReadAt(data, int64(c.Offset)); err != nil && err != io.EOF {
			return session.Reply{}, err
		}
		// The data is served even when its read status cannot be written
		// (a full disk): the status must not stand between a recipient and
		// the message.
		if err := h.record(s, m, i, c); err != nil {
			logNotRecorded(s.Remote, c.ID, err)
			if want := readFor[c.Type]; i < len(m.Env.Recipients) && len(h.pending) < maxPending && want > h.pending[c.ID] {
				h.pending[c.ID] = want
			}
		}
		return session.Reply{Body: &msrap.RetrieveOK{Data: data, Size: uint64(size)}}, nil
	})
}

// record moves a recipient's read status forward, or counts a list
// reader's retrieval (once per whole-message retrieval, at its first chunk).
func (h *handler) record(s *session.Session, m *store.Message, i int, c *msrap.Retrieve) error {
	if i >= len(m.Env.Recipients) {
		if c.Type != msrap.All || c.Offset != 0 {
			return nil
		}
		return m.CountRead(i-len(m.Env.Recipients), s.Remote.Addr(), time.Now())
	}
	return h.recordRead(m, i, readFor[c.Type])
}

// retryPending tries again to record the read statuses that failed.
func (h *handler) retryPending(s *session.Session) {
	for id, want := range h.pending {
		_, err := h.withMessage(id, func(m *store.Message, i int) (session.Reply, error) {
			return session.Reply{}, h.recordRead(m, i, want)
		})
		if err == nil || errors.Is(err, store.ErrNoSuch) {
			delete(h.pending, id)
			if err == nil {
				logRecordedLater(s.Remote, id)
			}
		}
	}
}

// recordRead moves recipient i's read status forward to want. When it is
// there already nothing is written (Update appends only what changed); a
// first read is written with other sessions' changes (batch.go).
func (h *handler) recordRead(m *store.Message, i int, want store.Read) error {
	return h.batches.update(m, i, func(r *store.RecipientStatus) { r.Read = max(r.Read, want) })
}

func (h *handler) scan(c *msrap.ScanList) (session.Reply, error) {
	begin := time.Unix(int64(min(c.BeginTime, 1<<40)), 0)
	end := time.Now().Add(-store.ScanLag).Truncate(time.Second)
	ok := &msrap.ScanListOK{Messages: []msgid.ID{}, EndTime: c.BeginTime}
	name := strings.ToLower(c.ListName)
	if !end.After(begin) || store.CheckListName(name) != nil {
		return session.Reply{Body: ok}, nil
	}
	entries, err := h.st.ScanList(name, begin, end)
	if err != nil {
		return session.Reply{}, err
	}
	ok.EndTime = uint64(end.Unix())
	if len(entries) > maxScan {
		// Stop at a whole second, so that resuming at endtime repeats nothing.
		cut := maxScan
		for cut > 0 && entries[cut].Submitted.Equal(entries[cut-1].Submitted) {
			cut--
		}
		if cut == 0 {
			cut = maxScan
		}
		ok.EndTime = uint64(entries[cut].Submitted.Unix())
		entries = entries[:cut]
	}
	for _, e := range entries {
		ok.Messages = append(ok.Messages, e.ID)
	}
	return session.Reply{Body: ok}, nil
}
