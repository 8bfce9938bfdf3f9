"""The one options model: every keyword of connect(), Station and Server has a row, with its default."""

from __future__ import annotations

import enum
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any, get_args

import pytest

import ocpprpc
from ocpprpc._options.model import CsmsOptions, SessionOptions, TcpStreamName, WebSocketOptions, WsCodecName
from ocpprpc._options.table import GROUP_KEYWORDS, Named, merge_options, option_table
from ocpprpc._ws import handshake_shared, tcp

ENTRIES: dict[str, Callable[..., Any]] = {
    "connect": ocpprpc.connect,
    "Station": ocpprpc.Station.__init__,
    "Server": ocpprpc.Server.__init__,
}
NOT_OPTIONS = {"self", "url", "identity"}


def keywords(entry: str) -> dict[str, inspect.Parameter]:
    parameters = inspect.signature(inspect.unwrap(ENTRIES[entry])).parameters
    return {
        name: parameter
        for name, parameter in parameters.items()
        if name not in NOT_OPTIONS and parameter.kind is not inspect.Parameter.VAR_KEYWORD
    }


def comparable(value: object) -> object:
    if (
        isinstance(value, enum.Enum)
        and isinstance(value.value, str)
        and type(value).__name__ == "DuplicatePolicy"
    ):
        return value.value  # Server(duplicate=DuplicatePolicy.EVICT) is the setting "evict"
    if callable(value) and hasattr(value, "__name__"):
        return Named(value.__name__)
    return value


@pytest.mark.parametrize("entry", sorted(ENTRIES))
def test_every_keyword_has_a_row(entry: str) -> None:
    rows = {row.name for row in option_table() if entry in row.entries}
    names = set(keywords(entry)) - set(GROUP_KEYWORDS[entry])
    assert names - rows == set(), f"{entry}: keywords without a row in option_table()"
    assert rows - names == set(), f"{entry}: rows naming keywords it does not take"
    assert set(GROUP_KEYWORDS[entry]) <= set(keywords(entry))


@pytest.mark.parametrize("entry", sorted(ENTRIES))
def test_every_documented_default_is_the_signature_default(entry: str) -> None:
    parameters = keywords(entry)
    wrong = {
        row.name: (row.default_for(entry), parameters[row.name].default)
        for row in option_table()
        if entry in row.entries and row.default_for(entry) != comparable(parameters[row.name].default)
    }
    assert wrong == {}


def test_every_row_is_documented_and_unique() -> None:
    rows = option_table()
    assert len({row.name for row in rows}) == len(rows)
    assert all(row.doc and row.group in {"websocket", "session", "csms", "object"} for row in rows)


def test_the_literals_match_the_transport() -> None:
    assert get_args(WsCodecName) == get_args(handshake_shared.WsCodecName)
    assert get_args(TcpStreamName) == get_args(tcp.TcpStreamName)


def test_live_options_are_marked() -> None:
    live = {row.name for row in option_table() if row.live}
    assert {"max_connections", "handshake_timeout", "call_timeout", "rate_limits"} <= live
    assert {"ws_codec", "tcp_stream", "inbound_budget"}.isdisjoint(live)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: WebSocketOptions(max_message_size=0), "max_message_size must be positive, got 0"),
        (lambda: WebSocketOptions(close_timeout=-1), "close_timeout must not be negative, got -1"),
        (lambda: WebSocketOptions(ws_codec="fast"), "unknown WebSocket codec 'fast' for ws_codec"),  # type: ignore[arg-type]
        (lambda: WebSocketOptions(tcp_stream="uv"), "unknown TCP stream 'uv' for tcp_stream"),  # type: ignore[arg-type]
        (lambda: SessionOptions(max_queued_calls=0), "max_queued_calls must be at least 1"),
        (lambda: SessionOptions(max_bad_messages=0), "max_bad_messages must be at least 1"),
        (lambda: SessionOptions(call_timeout=-0.5), "call_timeout must not be negative, got -0.5"),
        (lambda: CsmsOptions(max_connections=0), "max_connections must be at least 1"),
        (lambda: CsmsOptions(duplicate="ignore"), "unknown duplicate policy 'ignore'"),  # type: ignore[arg-type]
        (lambda: CsmsOptions(inbound_budget=0), "inbound_budget must be at least 1"),
    ],
)
def test_a_bad_value_is_refused_naming_the_option(make: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        make()


def test_options_are_frozen_and_slotted() -> None:
    options = WebSocketOptions()
    with pytest.raises(AttributeError):
        options.compression = True  # type: ignore[misc]
    assert not hasattr(options, "__dict__")


def test_merge_takes_the_object_or_the_keywords_never_a_conflict() -> None:
    given = SessionOptions(max_queued_calls=8)
    assert merge_options("connect", "session", None, given) is given
    assert merge_options("connect", "session", given, SessionOptions()) is given
    with pytest.raises(
        TypeError, match=r"connect\(\) got session=SessionOptions\(...\) and also detailed_errors="
    ):
        merge_options("connect", "session", given, SessionOptions(detailed_errors=True))
    # compression's keyword default differs per side: True is no conflict for a Server.
    assert (
        merge_options(
            "Server", "websocket", WebSocketOptions(), WebSocketOptions(compression=True)
        ).compression
        is None
    )


def test_station_takes_the_groups_and_refuses_a_conflict() -> None:
    station = ocpprpc.Station(
        "ws://127.0.0.1:1/ocpp",
        "CP1",
        connect_options={"password": "secret", "max_message_size": 1000},
        session_options={"ordered_handlers": True, "middleware": ()},
        max_bad_messages=2,
    )
    assert station.websocket_options == WebSocketOptions(max_message_size=1000)
    assert station.session_settings == SessionOptions(ordered_handlers=True, max_bad_messages=2)
    same = ocpprpc.Station(
        "ws://127.0.0.1:1/ocpp",
        "CP1",
        connect_options={"password": "secret"},
        session_options={"middleware": ()},
        websocket=WebSocketOptions(max_message_size=1000),
        session=SessionOptions(ordered_handlers=True, max_bad_messages=2),
    )
    assert (same.websocket_options, same.session_settings) == (
        station.websocket_options,
        station.session_settings,
    )
    with pytest.raises(TypeError, match="call_timeout="):
        ocpprpc.Station("ws://127.0.0.1:1/ocpp", "CP1", call_timeout=5, session=SessionOptions())
    with pytest.raises(ValueError, match="max_message_size must be positive"):
        ocpprpc.Station("ws://127.0.0.1:1/ocpp", "CP1", connect_options={"max_message_size": 0})


def test_both_doors_build_equal_objects() -> None:
    """compression's keyword default differs per side; left at it, it is the group's ``None``."""
    by_keywords = ocpprpc.Server(max_message_size=1000, max_queued_calls=8, max_connections=5)
    by_objects = ocpprpc.Server(
        websocket=WebSocketOptions(max_message_size=1000),
        session=SessionOptions(max_queued_calls=8),
        csms=CsmsOptions(max_connections=5),
    )
    assert by_keywords.websocket_options == by_objects.websocket_options
    assert by_keywords.session_settings == by_objects.session_settings
    assert by_keywords.csms_options == by_objects.csms_options
    assert by_keywords.compression is by_objects.compression is True
    assert ocpprpc.Server(compression=False).compression is False
    with pytest.raises(TypeError, match=r"Server\(\) got csms=CsmsOptions\(...\) and also max_connections="):
        ocpprpc.Server(csms=CsmsOptions(), max_connections=3)


def test_the_options_page_lists_every_option() -> None:
    page = (Path(__file__).resolve().parents[2] / "docs" / "options.rst").read_text(encoding="utf-8")
    missing = [row.name for row in option_table() if f"   * - ``{row.name}``" not in page]
    assert missing == [], "docs/options.rst does not list these options"
