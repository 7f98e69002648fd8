"""The im2000 protocol profile (../../../shared/spec/im2000-profile.asn1),
transcribed into pyasn1 by hand, independently of the Go codec.

Every "[n] CHOICE" is an explicit tag around the chosen alternative;
UTF8String is [UNIVERSAL 22] IMPLICIT OCTET STRING, as DESIGN.md resolves.
"""
from pyasn1.type import constraint, namedtype, tag, univ


def ctx(n, constructed=False):
    fmt = tag.tagFormatConstructed if constructed else tag.tagFormatSimple
    return tag.Tag(tag.tagClassContext, fmt, n)


def imp(t, n):
    """[n] IMPLICIT t"""
    return t.subtype(implicitTag=ctx(n, isinstance(t, (univ.Sequence, univ.SequenceOf))))


def exp(t, n):
    """[n] t, explicit (used for every tagged CHOICE)"""
    return t.subtype(explicitTag=ctx(n, True))


NT, OT = namedtype.NamedType, namedtype.OptionalNamedType


def seq(*fields):
    class S(univ.Sequence):
        componentType = namedtype.NamedTypes(*fields)
    return S()


def seq_of(component):
    class S(univ.SequenceOf):
        componentType = component
    return S()


def choice(*alts):
    class C(univ.Choice):
        componentType = namedtype.NamedTypes(*alts)
    return C()


class UTF8String(univ.OctetString):
    tagSet = univ.OctetString.tagSet.tagImplicitly(tag.Tag(tag.tagClassUniversal, tag.tagFormatSimple, 22))


def MessageIdentifier():
    return univ.OctetString().subtype(subtypeSpec=constraint.ValueSizeConstraint(16, 16))


def UInt():
    return univ.Integer().subtype(subtypeSpec=constraint.ValueRangeConstraint(0, 2**64 - 1))


def DomainName():
    return seq_of(UTF8String())


def MailBox():
    return seq(NT("localpart", imp(UTF8String(), 0)), NT("domain", imp(DomainName(), 1)))


def IPAddress():
    return choice(NT("version4", imp(univ.OctetString(), 0)), NT("version6", imp(univ.OctetString(), 1)))


def IPAddressAndPort():
    return seq(NT("address", exp(IPAddress(), 0)), NT("port", imp(UInt(), 1)))


def ServiceLocation():
    return choice(NT("literals", imp(seq_of(IPAddressAndPort()), 0)), NT("domain", imp(DomainName(), 1)))


def Empty():
    return seq()


def pdu(commands, responses):
    command = seq(NT("commanddata", exp(choice(*commands), 0)))
    response = seq(NT("forceabort", imp(univ.Boolean(), 0)),
                   NT("status", imp(univ.Enumerated(), 1)),
                   NT("responsedata", exp(choice(*responses), 2)))
    return choice(NT("command", imp(command, 1)), NT("response", imp(response, 2)))


def Authenticate():
    return seq(NT("account", imp(UTF8String(), 0)), NT("password", imp(UTF8String(), 1)))


def ID(n):
    return NT("identifier", imp(MessageIdentifier(), n))


# MSOAP
DeliveryStatus = lambda: seq(NT("notificationstatus", imp(univ.Enumerated(), 0)),
                             NT("read", imp(univ.Enumerated(), 1)), NT("pinned", imp(univ.Boolean(), 2)))
MSOAP = lambda: pdu(
    [NT("authenticate", imp(Authenticate(), 0)),
     NT("submitenvelope", imp(seq(OT("recipients", imp(seq_of(MailBox()), 0)),
                                  OT("lists", imp(seq_of(univ.OctetString()), 1)),
                                  NT("lifetime", imp(UInt(), 2))), 1)),
     NT("submitmsgchunk", imp(seq(NT("islast", imp(univ.Boolean(), 0)), NT("offset", imp(UInt(), 1)),
                                  NT("data", imp(univ.OctetString(), 2))), 2)),
     NT("track", imp(seq(ID(0)), 3)),
     NT("cancel", imp(seq(ID(0)), 4))],
    [NT("null", imp(Empty(), 0)),
     NT("authenticate", imp(Empty(), 1)),
     NT("submitenvelope", imp(seq(OT("recipients", imp(seq_of(univ.Enumerated()), 0)),
                                  OT("lists", imp(seq_of(univ.Enumerated()), 1))), 2)),
     NT("submitmsgchunk", imp(seq(OT("identifier", imp(MessageIdentifier(), 0))), 3)),
     NT("track", imp(seq(NT("recipients", imp(seq_of(seq(NT("recipient", imp(MailBox(), 0)),
                                                          NT("status", imp(DeliveryStatus(), 1)))), 0))), 4)),
     NT("cancel", imp(Empty(), 5))])

# MSRAP
MSRAP = lambda: pdu(
    [NT("scanlist", imp(seq(NT("listname", imp(UTF8String(), 0)), NT("begintime", imp(UInt(), 1))), 0)),
     NT("silence", imp(seq(ID(0)), 1)),
     NT("unpin", imp(seq(ID(0)), 2)),
     NT("querysize", imp(seq(ID(0)), 3)),
     NT("retrieve", imp(seq(ID(0), NT("type", imp(univ.Enumerated(), 1)), NT("offset", imp(UInt(), 2)),
                            NT("length", imp(UInt(), 3))), 4))],
    [NT("null", imp(Empty(), 0)),
     NT("scanlist", imp(seq(NT("messages", imp(seq_of(MessageIdentifier()), 0)), NT("endtime", imp(UInt(), 1))), 1)),
     NT("silence", imp(Empty(), 2)),
     NT("unpin", imp(Empty(), 3)),
     NT("retrieve", imp(seq(NT("data", imp(univ.OctetString(), 0)), NT("size", imp(UInt(), 1))), 4)),
     NT("querysize", imp(seq(NT("size", imp(UInt(), 0))), 5))])


# RNASP
def Notification():
    return seq(NT("storeclear", exp(ServiceLocation(), 0)), OT("storessl", exp(ServiceLocation(), 1)),
               NT("recipient", imp(MailBox(), 2)), ID(3), NT("sender", imp(UTF8String(), 4)),
               OT("size", imp(UInt(), 5)))


RNASP = lambda: pdu(
    [NT("notify", imp(seq(NT("notifications", imp(seq_of(Notification()), 0))), 0))],
    [NT("null", imp(Empty(), 0)),
     NT("notify", imp(seq(OT("results", imp(seq_of(univ.Enumerated()), 0))), 1))])

# RNAQP
ClientLocation = lambda: seq(NT("address", exp(IPAddress(), 0)), NT("port", imp(UInt(), 1)),
                             OT("domain", imp(DomainName(), 2)))
RNAQP = lambda: pdu(
    [NT("authenticate", imp(Authenticate(), 0)),
     NT("retrieveandclear", imp(Empty(), 1))],
    [NT("null", imp(Empty(), 0)),
     NT("authenticate", imp(Empty(), 1)),
     NT("retrieveandclear", imp(seq(NT("notifications", imp(seq_of(seq(
         NT("notification", imp(Notification(), 0)), NT("submitter", imp(ClientLocation(), 1)),
         NT("date", imp(UInt(), 2)))), 0))), 2))])

PROTOCOLS = {"MSOAP": MSOAP, "MSRAP": MSRAP, "RNASP": RNASP, "RNAQP": RNAQP}
