"""libFuzzer target (atheris): the engine never raises on peer input, and every reply it makes
is a well-formed CALLERROR (or 2.1 CALLRESULTERROR).

Coverage-guided, so it finds the inputs hypothesis' strategies do not think of. Each input
picks a version, a role and a codec (plain JSON or strict validation), then is fed to
``Connection.receive_message`` as text and as bytes. Run through nox (``nox -s fuzz``) or
directly: ``python fuzz/fuzz_engine.py -max_total_time=60 fuzz/corpus/engine``.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    import msgspec

    from ocpprpc import BadMessage, Connection, InvalidResponse, JsonObjectCodec, Role, codec_for

VERSIONS = ("ocpp1.6", "ocpp2.0.1", "ocpp2.1")
STRICT = {version: codec_for(version) for version in VERSIONS}


def check(version: str, role: Role, strict: bool, data: str | bytes) -> None:
    codec = STRICT[version] if strict else JsonObjectCodec()
    engine = Connection(role, version, codec=codec, max_outstanding_calls=4, max_bad_messages=2)
    for message_id in ("a", "b"):  # something outstanding, so answers can match
        engine.send(engine.new_call("Heartbeat", {}, message_id=message_id))
    engine.receive_message(data)
    for event in engine.events():
        reply = getattr(event, "reply", None)
        if reply is None:
            continue
        assert isinstance(event, BadMessage | InvalidResponse), event
        frame = msgspec.json.decode(reply)
        assert isinstance(frame, list) and len(frame) == 5 and frame[0] in (4, 5), reply
        assert frame[0] == 4 or version == "ocpp2.1", reply
        assert isinstance(frame[1], str) and frame[1], reply


def test_one_input(data: bytes) -> None:
    if len(data) < 1:
        return
    selector, body = data[0], data[1:]
    version = VERSIONS[selector % 3]
    role = Role.CSMS if selector & 4 else Role.CHARGING_STATION
    strict = bool(selector & 8)
    check(version, role, strict, body)
    check(version, role, strict, body.decode("utf-8", "replace"))


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
