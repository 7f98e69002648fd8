"""A conformance client for MSOAP and MSRAP written with pyasn1 alone.

usage: conformance.py MSOAP-ADDR MSRAP-ADDR STORE-DIR

It speaks to the running im2000-submitd and im2000-retrieved over TCP:
authenticate, submit a message in several chunks, track it, retrieve it
three ways with paging, silence, unpin, scan a list and cancel, checking
every answer. A recipient's identifier reaches a real recipient in a
notification; here it is read from the envelope in the store instead.
Prints "ok" and exits 0, or prints what failed and exits 1.
"""
import socket
import struct
import sys
import time

from pyasn1.codec.der import decoder, encoder

import im2000_profile as p
from check import fill

MESSAGE = (b"From: alice@example.org\r\nTo: bob@example.net\r\nSubject: conformance\r\n"
           b"X-Noise: not in the summary\r\n\r\n" + b"body line\r\n" * 40)


class Session:
    def __init__(self, addr, proto):
        host, port = addr.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        self.proto = proto

    def call(self, alt, body):
        pdu = encoder.encode(fill(p.PROTOCOLS[self.proto](), {"command": {"commanddata": {alt: body}}}))
        self.sock.sendall(struct.pack(">I", len(pdu)) + pdu)
        n = struct.unpack(">I", self.recv(4))[0]
        value, rest = decoder.decode(self.recv(n), asn1Spec=p.PROTOCOLS[self.proto]())
        assert not rest, "octets after the response"
        r = value["response"]
        data = r["responsedata"]
        return bool(r["forceabort"]), int(r["status"]), data.getName(), data.getComponent()

    def recv(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            assert chunk, "connection closed"
            buf += chunk
        return buf


def expect(result, status, alt, what):
    abort, st, name, body = result
    assert (st, name) == (status, alt), "%s: status %d %s (forceabort %s), want %d %s" % (what, st, name, abort, status, alt)
    return body


def envelope_ids(store, msgid):
    """Recipient and list identifiers from the envelope (im2000-store(5))."""
    ids = {}
    for line in open("%s/alice/msg/%s" % (store, msgid.hex()), "rb"):
        if line == b"\n":
            break
        f = line.split()
        if f[0] in (b"rcpt", b"list"):
            ids[f[2].decode()] = bytes.fromhex(f[1].decode())
    return ids


def page(s, ident, kind, length):
    out = b""
    while True:
        body = expect(s.call("retrieve", {"identifier": ident, "type": kind, "offset": len(out), "length": length}),
                      0, "retrieve", "retrieve type %d" % kind)
        out += bytes(body["data"])
        if len(out) >= int(body["size"]) or not body["data"]:
            assert len(out) == int(body["size"]), "paged %d of %d" % (len(out), int(body["size"]))
            return out


def main():
    msoap_addr, msrap_addr, store = sys.argv[1:4]
    o = Session(msoap_addr, "MSOAP")
    expect(o.call("track", {"identifier": b"\0" * 16}), 6, "null", "track before authenticate")
    expect(o.call("authenticate", {"account": b"alice", "password": b"alicepw"}), 0, "authenticate", "authenticate")
    env = expect(o.call("submitenvelope", {"recipients": [{"localpart": b"bob", "domain": [b"example", b"net"]}],
                                           "lists": [b"news"], "lifetime": 86400}), 0, "submitenvelope", "envelope")
    assert [int(x) for x in env["recipients"]] == [0] and [int(x) for x in env["lists"]] == [0], env.prettyPrint()
    chunks = [MESSAGE[i:i + 100] for i in range(0, len(MESSAGE), 100)]
    assert len(chunks) >= 3
    offset = 0
    for i, c in enumerate(chunks):
        last = i == len(chunks) - 1
        body = expect(o.call("submitmsgchunk", {"islast": last, "offset": offset, "data": c}), 0, "submitmsgchunk", "chunk %d" % i)
        offset += len(c)
    msgid = bytes(body["identifier"])
    assert len(msgid) == 16
    track = expect(o.call("track", {"identifier": msgid}), 0, "track", "track")
    st = track["recipients"][0]["status"]
    assert (int(st["notificationstatus"]), int(st["read"]), bool(st["pinned"])) == (0, 0, True), track.prettyPrint()

    ids = envelope_ids(store, msgid)
    bob, news = ids["bob@example.net"], ids["news"]
    r = Session(msrap_addr, "MSRAP")
    size = expect(r.call("querysize", {"identifier": bob}), 0, "querysize", "querysize")
    assert int(size["size"]) == len(MESSAGE)
    summary = page(r, bob, 1, 16)
    assert b"Subject: conformance\r\n" in summary and b"X-Noise" not in summary, summary
    header = page(r, bob, 2, 16)
    assert header == MESSAGE[:MESSAGE.index(b"\r\n\r\n") + 2], header
    assert page(r, bob, 3, 64) == MESSAGE
    expect(r.call("silence", {"identifier": bob}), 0, "silence", "silence")
    expect(r.call("unpin", {"identifier": bob}), 0, "unpin", "unpin")
    st = expect(o.call("track", {"identifier": msgid}), 0, "track", "track")["recipients"][0]["status"]
    assert (int(st["notificationstatus"]), int(st["read"]), bool(st["pinned"])) == (7, 3, False), st.prettyPrint()

    time.sleep(6.5)  # list scans stop 5 seconds short of the present
    scan = expect(r.call("scanlist", {"listname": b"news", "begintime": 0}), 0, "scanlist", "scanlist")
    assert [bytes(x) for x in scan["messages"]] == [news], scan.prettyPrint()
    assert page(r, news, 3, 0) == MESSAGE

    expect(o.call("cancel", {"identifier": msgid}), 0, "cancel", "cancel")
    expect(o.call("track", {"identifier": msgid}), 11, "null", "track after cancel")
    expect(r.call("retrieve", {"identifier": bob, "type": 3, "offset": 0, "length": 0}), 7, "null", "retrieve after cancel")
    print("ok")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print("conformance: %s" % e)
        sys.exit(1)
