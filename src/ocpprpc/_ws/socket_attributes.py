"""anyio's socket attributes without building all of them for each lookup.

anyio's ``SocketStream.extra_attributes`` is a dict of up to six closures made afresh, with a
``getpeername()`` system call, on every ``extra()``; the CSMS asks for the peer's address (and
on a plain connection for TLS attributes it does not have) several times per new connection:
about 6% of a connection's setup (bench/README.md, "Connection setup").  Both of ocpprpc's own
streams answer through :class:`LazySocketAttributes`: the peer's address from where the stream
keeps it, a foreign attribute refused at once, anything else from anyio's own mapping.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from anyio.abc import SocketAttribute

__all__ = ["LazySocketAttributes", "socket_address"]

_SOCKET_ATTRIBUTES = (
    SocketAttribute.family,
    SocketAttribute.local_address,
    SocketAttribute.local_port,
    SocketAttribute.raw_socket,
    SocketAttribute.remote_address,
    SocketAttribute.remote_port,
)


def socket_address(sockaddr: Any) -> Any:
    """An address as anyio reports it: an IPv6 4-tuple cut to ``(host, port)``, a scope id kept as ``%id``."""
    if isinstance(sockaddr, tuple) and len(sockaddr) == 4:
        host, port, _flowinfo, scope_id = sockaddr
        return (f"{host.split('%')[0]}%{scope_id}", port) if scope_id else (host, port)
    return sockaddr


class LazySocketAttributes(Mapping[Any, Callable[[], Any]]):
    """The mapping ``extra_attributes`` returns: ``full()`` is anyio's, ``peername()`` the peer's address.

    ``peername()`` returns the raw socket address, or something false (or raises ``OSError``)
    when the socket is not connected: then there is no ``remote_address``, as with anyio.
    """

    __slots__ = ("_full", "_peername")

    def __init__(
        self, full: Callable[[], Mapping[Any, Callable[[], Any]]], peername: Callable[[], Any]
    ) -> None:
        self._full = full
        self._peername = peername

    def __getitem__(self, key: Any) -> Callable[[], Any]:
        if key is SocketAttribute.remote_address:
            try:
                peer = self._peername()
            except OSError:
                peer = None
            if not peer:
                raise KeyError(key)
            address = socket_address(peer)
            return lambda: address
        if key not in _SOCKET_ATTRIBUTES:
            raise KeyError(key)
        return self._full()[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._full())

    def __len__(self) -> int:
        return len(self._full())
