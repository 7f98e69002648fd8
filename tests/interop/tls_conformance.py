"""conformance.py over TLS: Python's ssl module under the pyasn1 client.

usage: tls_conformance.py CA-FILE MSOAP-ADDR MSRAP-ADDR STORE-DIR

Every connection conformance.py makes is wrapped in TLS (1.2 at least),
verifying the server's certificate against CA-FILE for the host it dials.
"""
import socket
import ssl
import sys

import conformance

ctx = ssl.create_default_context(cafile=sys.argv[1])
ctx.minimum_version = ssl.TLSVersion.TLSv1_2
plain = socket.create_connection


def tls_connection(addr, timeout=None, *args, **kwargs):
    return ctx.wrap_socket(plain(addr, timeout, *args, **kwargs), server_hostname=addr[0])


conformance.socket.create_connection = tls_connection
del sys.argv[1]
try:
    conformance.main()
except AssertionError as e:
    print("conformance over TLS: %s" % e)
    sys.exit(1)
