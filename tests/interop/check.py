"""Interoperability check of the Go codec against pyasn1.

usage: check.py GO-SAMPLES.json OUT.json

For every PDU the Go codec encoded: decode it with the pyasn1 transcription
of the profile (all octets must be used), encode the value again with
pyasn1's DER encoder, and require the very same octets. Then build a set of
PDUs from Python values alone, encode them, and write them out for the Go
side to compare with its own encoding of the same values and to decode.
"""
import ipaddress
import json
import sys
import traceback

from pyasn1.codec.der import decoder, encoder
from pyasn1.type import univ

import im2000_profile as p


def fill(obj, value):
    """Sets a pyasn1 schema object from nested dicts, lists and scalars."""
    if isinstance(obj, univ.SequenceOf):
        for i, item in enumerate(value):
            if isinstance(item, (dict, list)):
                obj.setComponentByPosition(i)
                fill(obj.getComponentByPosition(i), item)
            else:
                obj.setComponentByPosition(i, item)
        return obj
    for name, item in value.items():  # Sequence or Choice
        if isinstance(item, (dict, list)):
            obj.setComponentByName(name)
            fill(obj.getComponentByName(name), item)
        else:
            obj.setComponentByName(name, item)
    return obj


def ident(b):
    return bytes((b + i) & 0xFF for i in range(16))


bob = {"localpart": b"bob", "domain": [b"example", b"org"]}
carol = {"localpart": b"carol.c", "domain": [b"mail", b"example", b"net"]}
notification = {
    "storeclear": {"literals": [
        {"address": {"version4": ipaddress.ip_address("127.0.0.1").packed}, "port": 4000},
        {"address": {"version6": ipaddress.ip_address("2001:db8::1").packed}, "port": 65535}]},
    "storessl": {"domain": [b"store", b"example", b"org"]},
    "recipient": carol, "identifier": ident(0x40), "sender": b"alice@example.org", "size": 70000}
plain = {"storeclear": {"domain": [b"example", b"org"]}, "recipient": bob, "identifier": ident(1),
         "sender": b"alice@example.org"}


def command(alt, body):
    return {"command": {"commanddata": {alt: body}}}


def response(alt, body, status=0, forceabort=False):
    return {"response": {"forceabort": forceabort, "status": status, "responsedata": {alt: body}}}


PYTHON_SAMPLES = [
    ("MSOAP", "track", command("track", {"identifier": ident(0)})),
    ("MSOAP", "submitenvelope", command("submitenvelope", {"recipients": [bob, carol], "lists": [b"golang"], "lifetime": 2592000})),
    ("MSOAP", "track-ok", response("track", {"recipients": [
        {"recipient": bob, "status": {"notificationstatus": 7, "read": 3, "pinned": False}},
        {"recipient": carol, "status": {"notificationstatus": 6, "read": 0, "pinned": True}}]})),
    ("MSOAP", "null", response("null", {}, status=1, forceabort=True)),
    ("MSRAP", "retrieve", command("retrieve", {"identifier": ident(4), "type": 2, "offset": 128, "length": 65536})),
    ("MSRAP", "scanlist-ok", response("scanlist", {"messages": [ident(5), ident(6)], "endtime": 1795372900})),
    ("RNASP", "notify", command("notify", {"notifications": [notification, plain]})),
    ("RNASP", "notify-ok", response("notify", {"results": [0, 1]})),
    ("RNAQP", "authenticate", command("authenticate", {"account": b"bob", "password": b"pw"})),
    ("RNAQP", "retrieveandclear-ok", response("retrieveandclear", {"notifications": [
        {"notification": notification, "submitter": {"address": {"version4": ipaddress.ip_address("192.0.2.7").packed},
                                                     "port": 51000, "domain": [b"store", b"example", b"org"]},
         "date": 1795372893},
        {"notification": plain, "submitter": {"address": {"version6": ipaddress.ip_address("::1").packed}, "port": 1},
         "date": 0}]})),
]


def main():
    go_samples = json.load(open(sys.argv[1]))
    out = {"checked": [], "errors": [], "python": []}
    for s in go_samples:
        what = "%s %s" % (s["proto"], s["name"])
        try:
            data = bytes.fromhex(s["hex"])
            value, rest = decoder.decode(data, asn1Spec=p.PROTOCOLS[s["proto"]]())
            if rest:
                raise ValueError("%d octets left over" % len(rest))
            again = encoder.encode(value)
            if again != data:
                raise ValueError("pyasn1 re-encodes differently:\n go %s\n py %s" % (data.hex(), again.hex()))
            out["checked"].append(what)
        except Exception:
            out["errors"].append("%s: %s" % (what, traceback.format_exc()))
    for proto, name, value in PYTHON_SAMPLES:
        try:
            obj = fill(p.PROTOCOLS[proto](), value)
            out["python"].append({"proto": proto, "name": name, "hex": encoder.encode(obj).hex()})
        except Exception:
            out["errors"].append("python %s %s: %s" % (proto, name, traceback.format_exc()))
    json.dump(out, open(sys.argv[2], "w"), indent=1)


if __name__ == "__main__":
    main()
