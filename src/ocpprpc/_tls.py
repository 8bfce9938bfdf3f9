"""TLS contexts for OCPP security profiles 2 and 3.

Both OCPP security whitepapers require TLS 1.2 or newer (A00.FR.312/.416; 1.6
tolerates 1.0/1.1 only for stations that cannot do better) and no TLS
compression (A00.FR.320).  The contexts made here start from
:func:`ssl.create_default_context` (certificate and host name checks on,
compression off) and raise the floor to TLS 1.2.  A context passed in by the
user is used as given: a CSMS that must admit a legacy 1.6 station can.
"""

from __future__ import annotations

import os
import ssl

__all__ = ["client_ssl_context", "server_ssl_context"]

StrPath = str | os.PathLike[str]


def client_ssl_context(
    *,
    cafile: StrPath | None = None,
    cadata: str | bytes | None = None,
    certfile: StrPath | None = None,
    keyfile: StrPath | None = None,
    password: str | bytes | None = None,
) -> ssl.SSLContext:
    """A charging station's context: verifies the CSMS certificate and host name, TLS >= 1.2.

    :param cafile: PEM file of the CA(s) to trust instead of the system store.
    :param cadata: the same, as PEM text.
    :param certfile: the station's certificate chain (security profile 3).
    :param keyfile: its private key, if not inside ``certfile``.
    :param password: the private key's password.
    """
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile, cadata=cadata)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if certfile is not None:
        context.load_cert_chain(certfile, keyfile, password)
    return context


def server_ssl_context(
    certfile: StrPath | None = None,
    keyfile: StrPath | None = None,
    *,
    password: str | bytes | None = None,
    client_cafile: StrPath | None = None,
    client_cadata: str | bytes | None = None,
) -> ssl.SSLContext:
    """A CSMS context, TLS >= 1.2; with a client CA it *requires* station certificates (profile 3).

    :param certfile: the CSMS certificate chain (PEM); ``None`` to load it yourself.
    :param keyfile: its private key, if not inside ``certfile``.
    :param password: the private key's password.
    :param client_cafile: PEM file of the CA(s) that sign station certificates;
        giving it (or ``client_cadata``) turns on ``CERT_REQUIRED``.
    :param client_cadata: the same, as PEM text.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if certfile is not None:
        context.load_cert_chain(certfile, keyfile, password)
    if client_cafile is not None or client_cadata is not None:
        context.load_verify_locations(cafile=client_cafile, cadata=client_cadata)
        context.verify_mode = ssl.CERT_REQUIRED
    return context
