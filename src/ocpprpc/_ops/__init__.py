"""Operations: log formatters, payload redaction, the station registry and tracing.

Standalone blocks an operator wires into a CSMS (the message middleware feeds
them): ``logfmt`` (JSON and console formatters, :func:`~ocpprpc.log_extra`),
``redact`` (id tokens and secrets out of payloads), ``registry`` (what is known
of each station), ``registry_sqlite`` (its SQLite store), ``tracing``
(OpenTelemetry spans from the middleware and the security events) and ``gc_tuning``
(the collector's thresholds for a process holding many connections).

May import: the standard library and msgspec; anyio and sqlite3 only in
``registry_sqlite``; opentelemetry only in ``tracing``, and only when a
``Tracing`` is made (the ``otel`` extra).
Never imports: another part of ocpprpc, trio, asyncio, socket, ssl, wsproto or websockets.
"""
