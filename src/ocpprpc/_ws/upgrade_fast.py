"""The server's fast path through a well-formed upgrade request, and its 101 answer.

h11 (under wsproto) reads a request head with a generator, a regex and an object per step:
about a third of the server's CPU per new connection (bench/README.md, "Connection setup").
Nearly every station sends its whole upgrade request in one segment, in the one shape RFC 6455
4.1 describes; :func:`parse_upgrade` reads that shape in one pass and returns what wsproto's
``Request`` would hold, or ``None`` for *anything* else (a head split across reads, an
obsolete line fold, a duplicate or non-ASCII WebSocket header, a body, HTTP/1.0...), which then
goes through h11 and wsproto exactly as before, with their answers.  So the fast path only
ever accepts what h11 and wsproto accept, with the same result; the differential tests in
``tests/ws/test_upgrade_fast.py`` hold it to that over generated requests.

Sans-IO: bytes in, values out.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from wsproto.utilities import generate_accept_token, split_comma_header

__all__ = ["FAST_HEAD_LIMIT", "FastUpgrade", "accept_response", "parse_upgrade"]

#: Heads longer than this go through h11 (its own limit on an incomplete head is 16 KiB).
FAST_HEAD_LIMIT = 16384

# RFC 7230 3.1.1 request-line and 3.2 header-field, as h11 reads them (h11/_abnf.py): a
# field value is bytes other than NUL and whitespace, inner runs of SP/HTAB allowed, OWS
# around it dropped.  Only GET and HTTP/1.1 take the fast path (RFC 6455 4.1, 2.).
# One regex over the whole head (every line ends in CRLF): a third of the cost of one per line.
_HEAD = re.compile(
    rb"GET ([\x21-\x7e]+) HTTP/1\.1\r\n"
    rb"((?:[-!#$%&'*+.^_`|~0-9a-zA-Z]+:[ \t]*(?:[^\x00\s]+(?:[ \t]+[^\x00\s]+)*)?[ \t]*\r\n)*)"
)
#: A Host value wsproto's IDNA decoding returns unchanged (printable ASCII, no "xn--" label).
_PLAIN_HOST = re.compile(rb"[\x21-\x7e]*")

# Headers wsproto reads (RFC 6455 4.2.1): one of each, or h11 and wsproto judge the request.
_SINGLE = frozenset((b"host", b"upgrade", b"connection", b"sec-websocket-key", b"sec-websocket-version"))
#: Headers wsproto consumes and leaves out of ``Request.extra_headers``.
_CONSUMED = frozenset((b"host", b"sec-websocket-protocol", b"sec-websocket-extensions"))
#: Headers that give a GET a body, or otherwise change how h11 frames the request.
_SLOW = frozenset((b"content-length", b"transfer-encoding"))


class FastUpgrade(NamedTuple):
    """What wsproto's ``Request`` event would hold for the same head, and the bytes after it."""

    target: str
    #: Lower-case names; all but Host and Sec-WebSocket-Protocol/-Extensions, as wsproto keeps them.
    extra_headers: list[tuple[bytes, bytes]]
    host: str
    subprotocols: list[str]
    #: The station offered extensions (permessage-deflate): answering needs wsproto's negotiation.
    offers_extensions: bool
    key: bytes
    #: Bytes that arrived after the head (frames the station sent before the 101).
    trailing: bytes
    #: Everything the request came in (head and trailing): what wsproto replays when needed.
    data: bytes


def parse_upgrade(data: bytes) -> FastUpgrade | None:
    """The upgrade request at the start of ``data``, or ``None`` when h11 must judge it."""
    end = data.find(b"\r\n\r\n")
    if end < 0 or end + 4 > FAST_HEAD_LIMIT:
        return None
    head = _HEAD.fullmatch(data, 0, end + 2)
    if head is None:
        return None
    extra: list[tuple[bytes, bytes]] = []
    seen: set[bytes] = set()
    host = connection = upgrade = key = version = None
    subprotocols: list[str] = []
    offers_extensions = False
    try:
        for line in head[2].split(b"\r\n")[:-1]:
            name, _, value = line.partition(b":")  # the regex checked the name: no ":" in it
            name = name.lower()
            value = value.strip(b" \t")
            if name in _SINGLE:
                if name in seen:
                    return None
                seen.add(name)
                if name == b"host":
                    host = value
                    continue  # wsproto keeps it as Request.host only
                if name == b"connection":
                    connection = split_comma_header(value)
                elif name == b"upgrade":
                    upgrade = value
                elif name == b"sec-websocket-key":
                    key = value
                else:
                    version = value
            elif name in _CONSUMED:
                if name == b"sec-websocket-protocol":
                    subprotocols.extend(split_comma_header(value))
                else:
                    split_comma_header(value)  # wsproto decodes it too: a non-ASCII offer is its case
                    offers_extensions = True
                continue
            elif name in _SLOW:
                return None
            extra.append((name, value))
    except UnicodeDecodeError:
        return None
    if (
        host is None
        or key is None
        or version != b"13"
        or upgrade is None
        or upgrade.lower() != b"websocket"
        or connection is None
        or not any(token.lower() == "upgrade" for token in connection)
        or not _PLAIN_HOST.fullmatch(host)
        or b"xn--" in host.lower()
    ):
        return None
    return FastUpgrade(
        head[1].decode("ascii"),
        extra,
        host.decode("ascii"),
        subprotocols,
        offers_extensions,
        key,
        data[end + 4 :],
        data,
    )


def accept_response(key: bytes, subprotocol: str | None) -> bytes:
    """The 101 answer wsproto writes for ``key`` and ``subprotocol``, no extensions, no extra headers."""
    head = (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + generate_accept_token(key) + b"\r\n"
    )
    if subprotocol is not None:
        head += b"Sec-WebSocket-Protocol: " + subprotocol.encode("ascii") + b"\r\n"
    return head + b"\r\n"
