"""Connection admission: who may open a WebSocket at all, decided before the upgrade.

:meth:`AdmissionPolicy.decide` looks at the peer address, the request headers
and the scheme and answers :class:`Admit` or :class:`Refuse` (an HTTP status
with a reason), so the server can answer 403 or 429 without spending a
WebSocket, an authentication callback or a session on the request.  Pure: no
sockets, no clock (the caller passes monotonic ``now``), stdlib only.

The checks, in order (the first that fails answers):

1. **Client address.**  The direct peer, unless it is one of
   ``trusted_proxies``: then the forwarding header the proxy writes
   (``X-Forwarded-For`` or RFC 7239 ``Forwarded``, one of them, chosen by
   ``proxy_header``) is read from the right, skipping trusted proxies, and the
   first untrusted address is the client.  Everything left of it was written by
   the client and could be anything, so it is never read.  A header from a
   peer that is not a trusted proxy is ignored.  Only one header is honoured:
   a proxy that appends to ``X-Forwarded-For`` passes a client's forged
   ``Forwarded`` through untouched, and reading that would let any client
   pick its address.  A malformed header is treated as absent (the direct
   peer is the client) and the decision says so in :attr:`Admit.notes`.
2. **IP deny list** (403): a match refuses, whatever the allow list says.
3. **IP allow list** (403): when one is given, only addresses in it pass.
4. **Scheme** (403): ``ws`` or ``wss``, after a trusted proxy's
   ``X-Forwarded-Proto`` or ``proto=`` (``http``/``https`` read as
   ``ws``/``wss``).
5. **Origin** (403): when ``allow_origins`` is given, an ``Origin`` header must
   equal one of them (scheme, host case-insensitively, port; default ports
   implied).  Charging stations send no Origin; browsers always do, and that
   is what the check is for (cross-site WebSocket hijacking of a dashboard's
   session).  A missing Origin passes unless ``allow_missing_origin=False``.
   A malformed or ``null`` Origin is refused: it can only match nothing.
6. **Upgrade rate per client address** (429 with ``Retry-After``): a token
   bucket per address, bounded in memory like the station buckets.
"""

from __future__ import annotations

import enum
import ipaddress
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from .ratelimit import RateLimit, RateLimiter, StationLimits

__all__ = [
    "Admit",
    "AdmissionPolicy",
    "IPAddress",
    "IPNetwork",
    "RefusalKind",
    "Refuse",
    "parse_ip",
    "parse_network",
    "parse_origin",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
#: Request headers: ``(name, value)`` pairs (bytes, as the handshake keeps them, or str),
#: or a mapping of names to values.  Names are compared case-insensitively.
Headers = Iterable[tuple[bytes | str, bytes | str]] | Mapping[str, str]

_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
_PROTO_SCHEMES = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}
_LABEL = r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?"
_HOST = re.compile(rf"{_LABEL}(?:\.{_LABEL})*|\[[0-9a-f:.]+\]", re.ASCII)
_ORIGIN = re.compile(r"([a-z][a-z0-9+.-]*)://([^/?#:\[\]]+|\[[^\]/]*\])(?::(\d{1,5}))?", re.ASCII)


class RefusalKind(enum.StrEnum):
    """Why a connection was refused (also the ``refusal`` of a ConnectionRefused event)."""

    IP_DENIED = "ip_denied"
    IP_NOT_ALLOWED = "ip_not_allowed"
    SCHEME = "scheme"
    ORIGIN = "origin"
    UPGRADE_RATE = "upgrade_rate"
    #: Not decided here: the server refuses with 503 when it holds its maximum of connections.
    CONNECTION_CAP = "connection_cap"
    #: Not decided here: no route of the server matches the URL path (404).
    NO_ROUTE = "no_route"
    #: Not decided here: a connection middleware refused (its status), failed (500) or hung (503).
    MIDDLEWARE = "middleware"


@dataclass(frozen=True, slots=True)
class Admit:
    """Let the upgrade proceed."""

    #: The client's address (after trusted proxies), ``None`` when unknown.
    client_ip: IPAddress | None
    #: ``ws`` or ``wss`` as the client used it (after trusted proxies).
    scheme: str
    #: What was noticed on the way, e.g. a malformed forwarding header treated as absent.
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Refuse:
    """Answer the upgrade request with *status* and close."""

    status: int
    reason: str
    kind: RefusalKind
    client_ip: IPAddress | None = None
    #: Seconds, for the ``Retry-After`` header of a 429.
    retry_after: int | None = None
    notes: tuple[str, ...] = ()

    def headers(self) -> list[tuple[bytes, bytes]]:
        """Extra response headers: ``Retry-After`` for a rate refusal."""
        if self.retry_after is None:
            return []
        return [(b"retry-after", str(self.retry_after).encode())]


# -- parsers ---------------------------------------------------------------------------


def _normalise(address: IPAddress) -> IPAddress:
    """An IPv4-mapped IPv6 address (``::ffff:192.0.2.1``, dual-stack sockets) is its IPv4 address."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def parse_ip(text: str | IPAddress) -> IPAddress | None:
    """An address from text (IPv4, IPv6, IPv4-mapped IPv6 read as IPv4), or ``None`` if it is not one."""
    if isinstance(text, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return _normalise(text)
    if not isinstance(text, str) or not text.isascii():
        return None
    try:
        return _normalise(ipaddress.ip_address(text.strip()))
    except ValueError:
        return None


def parse_network(text: str | IPNetwork) -> IPNetwork:
    """A network from ``"10.0.0.0/8"``, ``"2001:db8::/32"`` or a single address (a /32 or /128).

    Host bits must be zero (``"10.0.0.5/24"`` is refused rather than silently
    widened: in an allow or deny list a typo must not change what matches).
    An IPv4-mapped IPv6 network is read as the IPv4 network it maps.
    Raises :class:`ValueError` naming the text.
    """
    if isinstance(text, ipaddress.IPv4Network | ipaddress.IPv6Network):
        network: IPNetwork = text
    else:
        if not isinstance(text, str) or not text.isascii():
            raise ValueError(f"invalid IP network {text!r}: expected an address or CIDR such as '10.0.0.0/8'")
        try:
            network = ipaddress.ip_network(text.strip())
        except ValueError as exc:
            raise ValueError(f"invalid IP network {text!r}: {exc}") from None
    if isinstance(network, ipaddress.IPv6Network) and network.prefixlen >= 96 and network.subnet_of(_MAPPED):
        mapped = network.network_address.ipv4_mapped
        assert mapped is not None  # inside ::ffff:0:0/96
        return ipaddress.IPv4Network((mapped, network.prefixlen - 96))
    return network


def parse_origin(text: str) -> tuple[str, str, int]:
    """``scheme://host[:port]`` as ``(scheme, host, port)``, lower-case, default port filled in.

    No path, query, user info or trailing slash: an Origin is exactly this
    (RFC 6454 section 6.1).  Raises :class:`ValueError` naming the text.
    """
    problem = f"invalid origin {text!r}: expected scheme://host[:port], e.g. 'https://ops.example.com'"
    if not isinstance(text, str) or not text.isascii():
        raise ValueError(problem)
    match = _ORIGIN.fullmatch(text.strip().lower())
    if match is None:
        raise ValueError(problem)
    scheme, host, port_text = match.groups()
    if not _HOST.fullmatch(host):
        raise ValueError(problem)
    if host.startswith("[") and parse_ip(host[1:-1]) is None:
        raise ValueError(problem)
    if port_text is None:
        if scheme not in _DEFAULT_PORTS:
            raise ValueError(f"invalid origin {text!r}: scheme {scheme!r} has no default port; give one")
        return scheme, host, _DEFAULT_PORTS[scheme]
    port = int(port_text)
    if not 0 < port < 65536:
        raise ValueError(f"invalid origin {text!r}: port out of range")
    return scheme, host, port


def _header_values(headers: Headers, name: str) -> list[str]:
    """Every value of header *name*, in order, decoded as latin-1 (never fails)."""
    if isinstance(headers, Mapping):
        pairs: Iterable[tuple[bytes | str, bytes | str]] = headers.items()
    else:
        pairs = headers
    values = []
    for key, value in pairs:
        key_text = key.decode("latin-1") if isinstance(key, bytes) else key
        if key_text.lower() == name:
            values.append(value.decode("latin-1") if isinstance(value, bytes) else value)
    return values


def _list_items(values: list[str]) -> list[str]:
    """A comma-separated header (several lines join as one list, RFC 9110 5.3)."""
    return [item.strip() for value in values for item in value.split(",")]


def _node_address(node: str) -> IPAddress | None:
    """The address of a forwarded node: ``1.2.3.4``, ``1.2.3.4:80``, ``[::1]``, ``[::1]:80``, ``::1``."""
    if node.startswith("["):
        host, bracket, port = node[1:].partition("]")
        if not bracket or (port and not (port[0] == ":" and port[1:].isdigit() and port.isascii())):
            return None
        return parse_ip(host)
    if node.count(":") == 1:
        host, _, port = node.partition(":")
        if not (port.isdigit() and port.isascii()):
            return None
        node = host
    return parse_ip(node)


_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_FORWARDED_PAIR = re.compile(
    rf'\s*({_TOKEN})=("(?:[^"\\]|\\.)*"|[!#$%&\'*+.^_`|~0-9A-Za-z:\[\]-]+)\s*(;|$)', re.ASCII
)


def _forwarded_element(text: str) -> dict[str, str] | None:
    """One RFC 7239 element (``for=...;proto=...``) by lower-case name, or ``None`` if malformed.

    Lenient in one way proxies need: an IPv6 node with its brackets unquoted.
    """
    element: dict[str, str] = {}
    position = 0
    while position < len(text) or not element:
        match = _FORWARDED_PAIR.match(text, position)
        if match is None:
            return None
        name, value, _ = match.groups()
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        if name.lower() in element:
            return None
        element[name.lower()] = value
        position = match.end()
    return element


@dataclass(frozen=True, slots=True)
class _Hop:
    """One forwarding step: the address a proxy saw (``None``: unknown/obfuscated) and its scheme."""

    address: IPAddress | None
    proto: str | None


# -- the policy ------------------------------------------------------------------------


@dataclass
class AdmissionPolicy:
    """Who may open a connection: address lists, origins, schemes, upgrade rate per address.

    :param allow_ips: networks (CIDR text or networks) allowed to connect; empty: everyone.
    :param deny_ips: networks refused, even if also allowed.
    :param allow_origins: exact origins (``"https://ops.example.com"``) a browser
        may connect from; empty: the Origin header is not checked.
    :param allow_missing_origin: whether a request without Origin passes when
        origins are checked (stations send none).
    :param allowed_schemes: ``ws`` and/or ``wss``.
    :param upgrade_rate: upgrade requests per client address (``"20/10s"``, as
        ocpp-ws-io's default), ``None``: unlimited.
    :param trusted_proxies: networks whose forwarding header is believed.
    :param proxy_header: which header those proxies write.
    :param max_tracked_ips: bound on the per-address buckets (least recently seen go first).
    """

    allow_ips: Sequence[str | IPNetwork] = ()
    deny_ips: Sequence[str | IPNetwork] = ()
    allow_origins: Sequence[str] = ()
    allow_missing_origin: bool = True
    allowed_schemes: Sequence[str] = ("ws", "wss")
    upgrade_rate: RateLimit | str | None = None
    trusted_proxies: Sequence[str | IPNetwork] = ()
    proxy_header: Literal["x-forwarded-for", "forwarded"] = "x-forwarded-for"
    max_tracked_ips: int = 100_000
    _allow: tuple[IPNetwork, ...] = field(init=False, repr=False)
    _deny: tuple[IPNetwork, ...] = field(init=False, repr=False)
    _trusted: tuple[IPNetwork, ...] = field(init=False, repr=False)
    _origins: frozenset[tuple[str, str, int]] = field(init=False, repr=False)
    _rate: RateLimiter | None = field(init=False, repr=False)
    _now: float = field(init=False, repr=False, default=0.0)

    def __post_init__(self) -> None:
        for name in ("allow_ips", "deny_ips", "trusted_proxies", "allow_origins", "allowed_schemes"):
            if isinstance(getattr(self, name), str):
                raise ValueError(f"{name} is a list; got the single string {getattr(self, name)!r}")
        self._allow = tuple(parse_network(item) for item in self.allow_ips)
        self._deny = tuple(parse_network(item) for item in self.deny_ips)
        self._trusted = tuple(parse_network(item) for item in self.trusted_proxies)
        self._origins = frozenset(parse_origin(item) for item in self.allow_origins)
        self.allowed_schemes = tuple(scheme.lower() for scheme in self.allowed_schemes)
        for scheme in self.allowed_schemes:
            if scheme not in ("ws", "wss"):
                raise ValueError(f"allowed_schemes holds 'ws' and/or 'wss', got {scheme!r}")
        if isinstance(self.max_tracked_ips, bool) or self.max_tracked_ips < 1:
            raise ValueError(f"max_tracked_ips must be at least 1, got {self.max_tracked_ips!r}")
        if self.proxy_header not in ("x-forwarded-for", "forwarded"):
            raise ValueError(f"proxy_header is 'x-forwarded-for' or 'forwarded', got {self.proxy_header!r}")
        if self.upgrade_rate is None:
            self._rate = None
        else:
            limits = StationLimits(global_=self.upgrade_rate)  # type: ignore[arg-type]
            self.upgrade_rate = limits.global_
            self._rate = RateLimiter(limits, clock=self._clock, max_identities=self.max_tracked_ips)

    def _clock(self) -> float:
        return self._now

    def decide(
        self, peer_ip: str | IPAddress | None, headers: Headers, scheme: str, now: float
    ) -> Admit | Refuse:
        """Admit or refuse one upgrade request.

        :param peer_ip: the direct peer's address (``None`` or junk: unknown).
        :param headers: the request headers.
        :param scheme: ``ws`` or ``wss``, as the request reached us.
        :param now: monotonic seconds, for the upgrade rate.
        """
        notes: list[str] = []
        peer = None if peer_ip is None else parse_ip(peer_ip)
        if peer is None:
            notes.append("peer address unknown")
        client, scheme = self._client(peer, headers, scheme.lower(), notes)

        def refuse(status: int, kind: RefusalKind, reason: str, retry: int | None = None) -> Refuse:
            return Refuse(status, reason, kind, client, retry, tuple(notes))

        if client is not None and _within(client, self._deny):
            return refuse(403, RefusalKind.IP_DENIED, f"address {client} is denied")
        if self._allow and (client is None or not _within(client, self._allow)):
            return refuse(403, RefusalKind.IP_NOT_ALLOWED, f"address {client or 'unknown'} is not allowed")
        if scheme not in self.allowed_schemes:
            allowed = " or ".join(self.allowed_schemes) or "nothing"
            return refuse(403, RefusalKind.SCHEME, f"scheme {scheme!r} refused; use {allowed}")
        if self._origins:
            problem = self._origin_problem(_header_values(headers, "origin"))
            if problem is not None:
                return refuse(403, RefusalKind.ORIGIN, problem)
        if self._rate is not None:
            self._now = now
            verdict = self._rate.check(str(client) if client is not None else "unknown", "upgrade")
            if verdict.breach is not None:
                wait = max(1, math.ceil(verdict.breach.retry_after))
                source = client or "an unknown address"
                reason = f"too many upgrade requests from {source} ({verdict.breach.limit})"
                return refuse(429, RefusalKind.UPGRADE_RATE, reason, wait)
        return Admit(client, scheme, tuple(notes))

    def _origin_problem(self, values: list[str]) -> str | None:
        if not values:
            return None if self.allow_missing_origin else "no Origin header"
        if len(values) > 1:
            return "malformed Origin header: sent more than once"
        if values[0].strip().lower() == "null":
            return "opaque Origin 'null' refused"
        try:
            origin = parse_origin(values[0])
        except ValueError:
            return f"malformed Origin header {values[0][:100]!r}"
        if origin not in self._origins:
            return f"Origin {values[0][:100]!r} is not allowed"
        return None

    def _client(
        self, peer: IPAddress | None, headers: Headers, scheme: str, notes: list[str]
    ) -> tuple[IPAddress | None, str]:
        """The client address and scheme, through trusted proxies.

        The chain is walked from the right (the entry the nearest proxy wrote)
        and each entry parsed only when reached: whatever the client wrote
        further left, however malformed, is never looked at.
        """
        if peer is None or not _within(peer, self._trusted):
            return peer, scheme
        forwarded = self.proxy_header == "forwarded"
        entries = _list_items(_header_values(headers, self.proxy_header))
        if not entries:
            return peer, scheme
        protos = [] if forwarded else _list_items(_header_values(headers, "x-forwarded-proto"))
        chosen: _Hop | None = None
        for from_right, entry in enumerate(reversed(entries)):
            hop = _forwarded_hop(entry) if forwarded else _xff_hop(entry, from_right, protos)
            if hop is None:
                notes.append(f"{self.proxy_header} header malformed; treated as absent")
                return peer, scheme
            if hop.address is None:
                notes.append(f"{self.proxy_header} names an unknown or obfuscated node; treated as absent")
                return peer, scheme
            chosen = hop
            if not _within(hop.address, self._trusted):
                break
        assert chosen is not None  # entries is not empty
        if chosen.proto is not None:
            proto = _PROTO_SCHEMES.get(chosen.proto.lower())
            if proto is None:
                notes.append(f"forwarded scheme {chosen.proto[:20]!r} not understood; ignored")
            else:
                scheme = proto
        return chosen.address, scheme


def _xff_hop(entry: str, from_right: int, protos: list[str]) -> _Hop | None:
    """An X-Forwarded-For entry, with the X-Forwarded-Proto entry at the same place from the right.

    A shorter X-Forwarded-Proto list (one value set by the edge proxy, the
    common case) gives its first value to every hop.
    """
    address = _node_address(entry) if entry else None
    if address is None:
        return None
    if not protos or not any(protos):
        return _Hop(address, None)
    return _Hop(address, protos[-1 - from_right] if from_right < len(protos) else protos[0])


def _forwarded_hop(entry: str) -> _Hop | None:
    element = _forwarded_element(entry)
    if element is None:
        return None
    node = element.get("for")
    if node is None or node.lower() == "unknown" or node.startswith("_"):
        return _Hop(None, None)
    address = _node_address(node)
    return None if address is None else _Hop(address, element.get("proto"))


def _within(address: IPAddress, networks: tuple[IPNetwork, ...]) -> bool:
    # ``in`` between an IPv4 address and an IPv6 network is simply False.
    return any(address in network for network in networks)
