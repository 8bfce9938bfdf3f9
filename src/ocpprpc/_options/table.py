"""The one place that knows every option: :func:`option_table`, and how the doors merge.

Two kinds of rows.  A *setting* is a field of an option group
(:mod:`ocpprpc._options.model`): a plain value, validated there, also given
whole as ``websocket=``, ``session=`` or ``csms=``.  An *object* is a keyword
whose value has behaviour or identity (a router, a policy, a callback, a TLS
context): it stays a keyword of the entry points that take it and is listed
here so that the table covers every keyword (``tests/options`` fails for a
keyword without a row, or a row whose default differs from the signature's).
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields, replace
from typing import Any, TypeVar

from .model import GROUPS, CsmsOptions, SessionOptions, WebSocketOptions
from .policies import Backoff, OutboxFullPolicy, TransactionRetry

__all__ = ["Named", "OptionSpec", "merge_options", "option_table", "split_session_extras"]

CONNECT, STATION, SERVER = "connect", "Station", "Server"


@dataclass(frozen=True, slots=True)
class Named:
    """A default this part cannot import (a function, another part's enum), by its name."""

    name: str


@dataclass(frozen=True, slots=True)
class OptionSpec:
    """One row of :func:`option_table`."""

    #: The keyword (and, for a setting, the field) name.
    name: str
    #: ``websocket``, ``session`` or ``csms`` for a setting; ``object`` for a keyword only.
    group: str
    #: The default (the option object's, for a setting).
    default: object
    #: Whether a running server may change it, for the connections or calls that follow.
    live: bool
    doc: str
    #: The entry points that take it as a keyword (``connect``, ``Station``, ``Server``).
    entries: tuple[str, ...]
    #: Where an entry point's keyword default differs from ``default``.
    entry_defaults: dict[str, object] = field(default_factory=dict)

    def default_for(self, entry: str) -> object:
        return self.entry_defaults.get(entry, self.default)


# Which entry points take each setting as a keyword (all take the groups whole).
_SETTING_ENTRIES: dict[str, tuple[str, ...]] = {
    "connect_timeout": (CONNECT,),
    "compression": (CONNECT, SERVER),
    "max_message_size": (CONNECT, SERVER),
    "close_timeout": (CONNECT, SERVER),
    "send_timeout": (CONNECT, SERVER),
    "ws_codec": (CONNECT, SERVER),
    "tcp_stream": (CONNECT, SERVER),
    "keepalive": (CONNECT, STATION, SERVER),
    "call_timeout": (STATION,),
    "max_outstanding_calls": (CONNECT, STATION, SERVER),
    "detailed_errors": (CONNECT, STATION, SERVER),
    "max_bad_messages": (CONNECT, STATION, SERVER),
    "max_queued_calls": (CONNECT, SERVER),
    "max_queued_bytes": (),
    "max_concurrent_handlers": (),
    "ordered_handlers": (),
    "handshake_timeout": (SERVER,),
    "max_connections": (SERVER,),
    "inbound_budget": (SERVER,),
    "duplicate": (SERVER,),
    "require_boot": (SERVER,),
}
_SETTING_ENTRY_DEFAULTS: dict[str, dict[str, object]] = {
    "compression": {CONNECT: False, SERVER: True},
}

_ALL = (CONNECT, STATION, SERVER)
_STATION_PROTOCOLS: dict[str, object] = {CONNECT: ("ocpp1.6",), STATION: ("ocpp1.6",)}

#: (name, default, live, doc, entries, entry defaults) of every keyword that takes an object.
_OBJECTS: tuple[tuple[str, object, bool, str, tuple[str, ...], dict[str, object]], ...] = (
    ("protocols", ("ocpp2.1", "ocpp2.0.1", "ocpp1.6"), False,
     "OCPP versions offered (station) or accepted (CSMS), most preferred first.",
     _ALL, _STATION_PROTOCOLS),
    ("router", None, False, "Handlers for the CALLs the peer sends.", _ALL, {}),
    ("validation", False, True,
     "Strict schema validation: ``False``, ``True`` or a ``ValidationPolicy``.", _ALL, {}),
    ("quirks", None, False, "Vendor quirk profiles repairing the peer's payloads before validation.",
     (CONNECT, SERVER), {}),
    ("ssl_context", None, False, "TLS settings for ``wss://``.", (CONNECT, SERVER), {}),
    ("password", None, False, "the Basic-auth password (security profiles 1 and 2).", (CONNECT,), {}),
    ("headers", None, False, "extra HTTP headers for the upgrade request.", (CONNECT,), {}),
    ("query", None, False, "extra query parameters for the upgrade request.", (CONNECT,), {}),
    ("on_message", None, True, "Exchange-log hook seeing every message in and out.", (STATION, SERVER), {}),
    ("auth", None, True, "the callback deciding on each upgrade request.", (SERVER,), {}),
    ("on_connect", None, True, "runs once per accepted station, inside its session.", (SERVER,), {}),
    ("identity_check", Named("check_identity"), True,
     "judges each station identity after percent-decoding.", (SERVER,), {}),
    ("admission", None, True, "an ``AdmissionPolicy`` (addresses, origins, upgrade rate).", (SERVER,), {}),
    ("rate_limits", None, True, "``StationLimits`` every station's CALLs are held to.", (SERVER,), {}),
    ("replay_cache", None, False,
     "answer a repeated message id from memory (a size, or a ``ReplayCache``).", (SERVER,), {}),
    ("boot_registry", None, False, "where the boot gate remembers booted identities.", (SERVER,), {}),
    ("security_events", None, False, "the ``SecurityEvents`` hub the server reports to.", (SERVER,), {}),
    ("registry", None, False, "a ``StationRegistry`` kept up to date (or ``True``: in memory).",
     (SERVER,), {}),
    ("command_buffer", None, False, "a ``CommandBuffer`` for commands to stations that are away.",
     (SERVER,), {}),
    ("session_state", None, False, "``SessionStates``: ``session.state`` kept across reconnects.",
     (SERVER,), {}),
    ("routes", None, False, "URL ``Route`` patterns with their own settings; 404 for other paths.",
     (SERVER,), {}),
    ("connection_middleware", (), True, "run during each upgrade, before ``auth``.", (SERVER,), {}),
    ("metrics", None, False, "Prometheus ``Metrics`` (or ``True``: a new one); ``None``: none, no cost.",
     (SERVER,), {}),
    ("http_endpoints", None, False,
     "``/health`` and ``/metrics`` on the station port; ``None``: with ``metrics``.", (SERVER,), {}),
    ("reconnect", Backoff(), True, "the ``Backoff`` between reconnects; ``None``: none.", (STATION,), {}),
    ("data", None, False, "the user data dict shared by every connection's session.", (STATION,), {}),
    ("boot", None, False, "a BootNotification payload; the station boots itself.", (STATION,), {}),
    ("boot_retry_interval", 10.0, True, "seconds before re-sending a Pending or Rejected boot.",
     (STATION,), {}),
    ("outbox_size", 100, False, "calls that may wait for delivery.", (STATION,), {}),
    ("outbox_full", OutboxFullPolicy.REJECT, True, "``OutboxFullPolicy`` when the outbox is full.",
     (STATION,), {}),
    ("retry", None, True, "the default ``Retry`` of every call.", (STATION,), {}),
    ("send_interval", 0.0, True, "seconds between two calls leaving the outbox.", (STATION,), {}),
    ("outbox", None, False, "the ``OutboxStore`` for messages that must survive a restart.",
     (STATION,), {}),
    ("durable", Named("is_transaction_message"), False, "picks the messages that go to the store.",
     (STATION,), {}),
    ("transaction_retry", TransactionRetry(), True, "attempts and interval for durable messages.",
     (STATION,), {}),
    ("on_delivered", None, True, "called with the answer of every durable message.", (STATION,), {}),
    ("on_event", None, True, "called with each ``StationEvent``.", (STATION,), {}),
    ("connect_options", None, False,
     "further connection keywords (``password``, ``ssl_context``, a setting of ``websocket``).",
     (STATION,), {}),
    ("session_options", None, False,
     "further session keywords (a setting of ``session``, ``middleware``, ...).", (STATION,), {}),
)  # fmt: skip

#: The keywords that take a whole group, per entry point.
GROUP_KEYWORDS: dict[str, tuple[str, ...]] = {
    CONNECT: ("websocket", "session"),
    STATION: ("websocket", "session"),
    SERVER: ("websocket", "session", "csms"),
}


def option_table() -> tuple[OptionSpec, ...]:
    """Every option of :func:`~ocpprpc.connect`, :class:`~ocpprpc.Station` and
    :class:`~ocpprpc.Server`: its group, default, whether it can change live, and what it does."""
    rows = []
    for group, options_type in GROUPS.items():
        for option in fields(options_type):
            assert option.default is not MISSING
            rows.append(
                OptionSpec(
                    option.name,
                    group,
                    option.default,
                    bool(option.metadata["live"]),
                    str(option.metadata["doc"]),
                    _SETTING_ENTRIES[option.name],
                    _SETTING_ENTRY_DEFAULTS.get(option.name, {}),
                )
            )
    for name, default, live, doc, entries, entry_defaults in _OBJECTS:
        rows.append(OptionSpec(name, "object", default, live, doc, entries, entry_defaults))
    return tuple(rows)


def live_options() -> frozenset[str]:
    """The options a running server may change (the future ``reconfigure()`` takes these)."""
    return frozenset(row.name for row in option_table() if row.live)


_Group = TypeVar("_Group", WebSocketOptions, SessionOptions, CsmsOptions)


def merge_options(entry: str, keyword: str, given: _Group | None, from_keywords: _Group) -> _Group:
    """The group an entry point uses: *given* whole, or the one its keywords built.

    Giving both is fine while every keyword of the group keeps its default; a
    keyword set as well is a conflict (which one should win?), refused with a
    ``TypeError`` naming it.
    """
    rows = {row.name: row for row in option_table()}
    if given is None:
        # A keyword left at its side's default (compression: on for a Server) is the group's
        # "the side's default", so both doors build equal objects.
        sided: dict[str, Any] = {
            option.name: rows[option.name].default
            for option in fields(from_keywords)
            if rows[option.name].entry_defaults
            and getattr(from_keywords, option.name) == rows[option.name].default_for(entry)
        }
        return replace(from_keywords, **sided) if sided else from_keywords
    clashing = [
        option.name
        for option in fields(from_keywords)
        if getattr(from_keywords, option.name) != rows[option.name].default_for(entry)
    ]
    if clashing:
        names = ", ".join(f"{name}=" for name in clashing)
        raise TypeError(
            f"{entry}() got {keyword}={type(given).__name__}(...) and also {names}: give each option"
            f" once, inside the {type(given).__name__} or as a keyword"
        )
    return given


def split_session_extras(extras: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split free ``**session_options`` into settings of :class:`SessionOptions` and the rest.

    A shared ``anyio.CapacityLimiter`` as ``max_concurrent_handlers`` is an object, not a
    setting: it stays with the rest and goes to the session as it is.
    """
    names = {option.name for option in fields(SessionOptions)}
    settings = {
        name: value
        for name, value in extras.items()
        if name in names and (name != "max_concurrent_handlers" or isinstance(value, int))
    }
    rest = {name: value for name, value in extras.items() if name not in settings}
    return settings, rest
