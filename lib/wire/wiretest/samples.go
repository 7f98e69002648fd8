// Package wiretest holds sample PDUs of every command and response of the
// four protocols, for round-trip, interoperability and fuzz tests.
package wiretest

import (
	"net/netip"

	"im2000/lib/msgid"
	"im2000/lib/wire"
	"im2000/lib/wire/msoap"
	"im2000/lib/wire/msrap"
	"im2000/lib/wire/rnaqp"
	"im2000/lib/wire/rnasp"
)

// Sample is one PDU: a command, or a response with its forceabort and status.
type Sample struct {
	Name       string
	Proto      *wire.Protocol
	Command    wire.Body
	ForceAbort bool
	Status     uint64
	Response   wire.Body
	// Extension: im2000's own alternative, not in the profile
	// (msoap.Resend); another implementation refuses it.
	Extension bool
}

// Bytes encodes the sample.
func (s Sample) Bytes() []byte {
	if s.Command != nil {
		return wire.MarshalCommand(s.Command)
	}
	return wire.MarshalResponse(s.ForceAbort, s.Status, s.Response)
}

// ID returns a fixed identifier whose octets are b, b+1, ...
func ID(b byte) msgid.ID {
	var id msgid.ID
	for i := range id {
		id[i] = b + byte(i)
	}
	return id
}

var (
	bob   = wire.MailBox{Local: "bob", Domain: wire.DomainName{"example", "org"}}
	carol = wire.MailBox{Local: "carol.c", Domain: wire.DomainName{"mail", "example", "net"}}
	size  = uint64(70000)
	id9   = ID(9)
)

// Notification is a notification with every optional field.
func Notification() rnasp.Notification {
	ssl := wire.ServiceLocation{Domain: wire.DomainName{"store", "example", "org"}}
	return rnasp.Notification{
		StoreClear: wire.ServiceLocation{Literals: []wire.AddrPort{
			netip.MustParseAddrPort("127.0.0.1:4000"), netip.MustParseAddrPort("[2001:db8::1]:65535")}},
		StoreSSL:  &ssl,
		Recipient: carol,
		ID:        ID(0x40),
		Sender:    "alice@example.org",
		Size:      &size,
	}
}

// Samples returns one or more samples of every PDU alternative.
func Samples() []Sample {
	plain := rnasp.Notification{StoreClear: wire.ServiceLocation{Domain: wire.DomainName{"example", "org"}},
		Recipient: bob, ID: ID(1), Sender: "alice@example.org"}
	return []Sample{
		{Name: "authenticate", Proto: msoap.Protocol, Command: &msoap.Authenticate{Account: "alice", Password: "s3cret ü"}},
		{Name: "submitenvelope", Proto: msoap.Protocol, Command: &msoap.SubmitEnvelope{Recipients: []wire.MailBox{bob, carol}, Lists: [][]byte{[]byte("golang")}, Lifetime: 2592000}},
		{Name: "submitenvelope-lists-only", Proto: msoap.Protocol, Command: &msoap.SubmitEnvelope{Lists: [][]byte{[]byte("a"), []byte("b")}, Lifetime: 0}},
		{Name: "submitmsgchunk", Proto: msoap.Protocol, Command: &msoap.SubmitMsgChunk{IsLast: true, Offset: 1 << 33, Data: []byte("Subject: hi\r\n\r\nbody\r\n")}},
		{Name: "track", Proto: msoap.Protocol, Command: &msoap.Track{ID: ID(0)}},
		{Name: "cancel", Proto: msoap.Protocol, Command: &msoap.Cancel{ID: ID(0xf0)}},
		{Name: "null", Proto: msoap.Protocol, ForceAbort: true, Status: msoap.ErrorMalformedPDU, Response: wire.Null{}},
		{Name: "authenticate-ok", Proto: msoap.Protocol, Response: msoap.AuthenticateOK{}},
		{Name: "submitenvelope-ok", Proto: msoap.Protocol, Response: &msoap.SubmitEnvelopeOK{Recipients: []uint64{msoap.Acceptable, msoap.Acceptable}, Lists: []uint64{msoap.SubmissionAccessDenied}}},
		{Name: "submitmsgchunk-ok", Proto: msoap.Protocol, Response: &msoap.SubmitMsgChunkOK{}},
		{Name: "submitmsgchunk-ok-last", Proto: msoap.Protocol, Response: &msoap.SubmitMsgChunkOK{ID: &id9}},
		{Name: "track-ok", Proto: msoap.Protocol, Response: &msoap.TrackOK{Recipients: []msoap.RecipientStatus{
			{Recipient: bob, Status: msoap.DeliveryStatus{Notification: 7, Read: 3, Pinned: false}},
			{Recipient: carol, Status: msoap.DeliveryStatus{Notification: 6, Read: 0, Pinned: true}}}}},
		{Name: "cancel-ok", Proto: msoap.Protocol, Status: msoap.ErrorNoSuchMessage, Response: msoap.CancelOK{}},
		{Name: "resend", Proto: msoap.Protocol, Command: &msoap.Resend{ID: ID(0xf1)}, Extension: true},
		{Name: "resend-ok", Proto: msoap.Protocol, Response: &msoap.ResendOK{Recipients: 3, Held: 1, Until: 1795372893}, Extension: true},
		{Name: "resend-ok-none", Proto: msoap.Protocol, Response: &msoap.ResendOK{}, Extension: true},

		{Name: "scanlist", Proto: msrap.Protocol, Command: &msrap.ScanList{ListName: "golang", BeginTime: 1795372893}},
		{Name: "silence", Proto: msrap.Protocol, Command: &msrap.Silence{ID: ID(1)}},
		{Name: "unpin", Proto: msrap.Protocol, Command: &msrap.UnPin{ID: ID(2)}},
		{Name: "querysize", Proto: msrap.Protocol, Command: &msrap.QuerySize{ID: ID(3)}},
		{Name: "retrieve", Proto: msrap.Protocol, Command: &msrap.Retrieve{ID: ID(4), Type: msrap.HeadersOnly, Offset: 128, Length: 65536}},
		{Name: "null", Proto: msrap.Protocol, ForceAbort: true, Status: msrap.ErrorCommandTimeout, Response: wire.Null{}},
		{Name: "scanlist-ok", Proto: msrap.Protocol, Response: &msrap.ScanListOK{Messages: []msgid.ID{ID(5), ID(6)}, EndTime: 1795372900}},
		{Name: "scanlist-ok-empty", Proto: msrap.Protocol, Response: &msrap.ScanListOK{EndTime: 0}},
		{Name: "silence-ok", Proto: msrap.Protocol, Response: msrap.SilenceOK{}},
		{Name: "unpin-ok", Proto: msrap.Protocol, Response: msrap.UnPinOK{}},
		{Name: "retrieve-ok", Proto: msrap.Protocol, Response: &msrap.RetrieveOK{Data: []byte("From: a@b\r\n"), Size: 255}},
		{Name: "querysize-ok", Proto: msrap.Protocol, Response: &msrap.QuerySizeOK{Size: 300}},

		{Name: "notify", Proto: rnasp.Protocol, Command: &rnasp.Notify{Notifications: []rnasp.Notification{Notification(), plain}}},
		{Name: "null", Proto: rnasp.Protocol, ForceAbort: true, Status: rnasp.ErrorUnexpectedCommand, Response: wire.Null{}},
		{Name: "notify-ok", Proto: rnasp.Protocol, Response: &rnasp.NotifyOK{Results: []uint64{rnasp.Accepted, rnasp.NoUser}}},
		{Name: "notify-ok-all", Proto: rnasp.Protocol, Response: &rnasp.NotifyOK{}},

		{Name: "authenticate", Proto: rnaqp.Protocol, Command: &rnaqp.Authenticate{Account: "bob", Password: "pw"}},
		{Name: "retrieveandclear", Proto: rnaqp.Protocol, Command: rnaqp.RetrieveAndClear{}},
		{Name: "null", Proto: rnaqp.Protocol, Status: rnaqp.ErrorNotPermitted, Response: wire.Null{}},
		{Name: "authenticate-ok", Proto: rnaqp.Protocol, Response: rnaqp.AuthenticateOK{}},
		{Name: "retrieveandclear-ok", Proto: rnaqp.Protocol, Response: &rnaqp.RetrieveAndClearOK{Notifications: []rnaqp.NotificationAndLocalData{
			{Notification: Notification(), Submitter: wire.ClientLocation{Addr: netip.MustParseAddr("192.0.2.7"), Port: 51000, Domain: wire.DomainName{"store", "example", "org"}}, Date: 1795372893},
			{Notification: plain, Submitter: wire.ClientLocation{Addr: netip.MustParseAddr("::1"), Port: 1}, Date: 0}}}},
	}
}
