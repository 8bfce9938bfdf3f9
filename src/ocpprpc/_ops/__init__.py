"""Operations: log formatters, payload redaction and the station registry.

Standalone blocks an operator wires into a CSMS (the message middleware feeds
them): ``logfmt`` (JSON and console formatters, :func:`~ocpprpc.log_extra`),
``redact`` (id tokens and secrets out of payloads), ``registry`` (what is known
of each station) and ``registry_sqlite`` (its SQLite store).

May import: the standard library and msgspec; anyio and sqlite3 only in
``registry_sqlite``.
Never imports: another part of ocpprpc, trio, asyncio, socket, ssl, wsproto or websockets.
"""
