"""Redaction: no id token or secret of any version survives, whatever the payload's shape."""

from __future__ import annotations

import json
import re
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ocpprpc
from ocpprpc import PayloadKind, protocol_types

from .samples import SCHEMA_VERSIONS, FullSample

# The oracle, independent of the Redactor's own lists: property names in the schemas that
# hold an id token or a secret (found by grepping every schema for idTag, idToken, token,
# password, pin, certificate, csr, exi and key; hashes, public keys and enums left out).
SENSITIVE = re.compile(
    r"^(idTag|parentIdTag|idToken|additionalIdToken|idTokens|password|apnPassword|basicAuthPassword"
    r"|simPin|certificate|certificateChain|signingCertificate|csr|exiRequest|exiResponse)$"
)
SENSITIVE_IN = {("vpn", "key")}


def sensitive_strings(value: Any, parent: str | None = None) -> list[str]:
    """Every value in *value* under a sensitive property name (as text)."""
    found: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if SENSITIVE.match(key) or (parent, key) in SENSITIVE_IN:
                found += _leaves(item, key)
            else:
                found += sensitive_strings(item, key)
    elif isinstance(value, list):
        for item in value:
            found += sensitive_strings(item, parent)
    return found


def _leaves(value: Any, key: str) -> list[str]:
    """The secret leaves under a sensitive key: an IdTokenType's own ``idToken`` only."""
    if isinstance(value, dict):
        return sensitive_strings(value, key)
    if isinstance(value, list):
        return [leaf for item in value for leaf in _leaves(item, key)]
    if isinstance(value, bool) or value is None:
        return []
    return [str(value)]


def every_message() -> list[tuple[str, str, PayloadKind, type[Any]]]:
    found = []
    for protocol in SCHEMA_VERSIONS:
        types = protocol_types(protocol)
        for action in sorted(types.actions):
            for kind in (PayloadKind.REQUEST, PayloadKind.RESPONSE):
                message_type = types.payload_type(action, kind)
                if message_type is not None:
                    found.append((protocol, action, kind, message_type))
    return found


MESSAGES = every_message()


def test_every_message_with_an_id_token_or_secret_is_redacted() -> None:
    redact = ocpprpc.Redactor()
    covered: dict[str, set[str]] = {protocol: set() for protocol in SCHEMA_VERSIONS}
    for protocol, action, kind, message_type in MESSAGES:
        payload = FullSample().payload(message_type)
        secrets = sensitive_strings(payload)
        if not secrets:
            continue
        covered[protocol].add(action)
        before = json.dumps(payload)
        redacted = redact(payload)
        text = json.dumps(redacted)
        leaked = [secret for secret in secrets if secret in text]
        assert leaked == [], f"{protocol} {action} {kind.name}: {leaked} survived"
        assert json.dumps(payload) == before, "the payload given was changed"
        # the same through JSON text
        assert [s for s in secrets if s in redact.redact_json(before)] == []
        assert [s for s in secrets if s in redact.redact_json(before.encode())] == []
    # every version's id-token carriers were among them
    assert {"Authorize", "StartTransaction", "StopTransaction", "SendLocalList"} <= covered["ocpp1.6"]
    for protocol in ("ocpp2.0.1", "ocpp2.1"):
        assert {"Authorize", "TransactionEvent", "RequestStartTransaction", "SetNetworkProfile"} <= covered[
            protocol
        ]
    assert sum(len(actions) for actions in covered.values()) >= 35  # 37 actions when written


def test_typed_messages_are_redacted_by_their_wire_names() -> None:
    from ocpprpc import v16, v201

    request = v16.AuthorizeRequest(id_tag="CARD-0001-SECRET")
    assert ocpprpc.Redactor()(request) == {"idTag": "****CRET"}
    event = msgspec.convert(
        {
            "eventType": "Started",
            "timestamp": "2025-01-01T00:00:00Z",
            "triggerReason": "Authorized",
            "seqNo": 0,
            "transactionInfo": {"transactionId": "T1"},
            "idToken": {"idToken": "04A1B2C3D4E5F6", "type": "ISO14443"},
        },
        v201.TransactionEventRequest,
    )
    redacted = ocpprpc.Redactor()(event)
    assert redacted["idToken"] == {"idToken": "****E5F6", "type": "ISO14443"}
    assert redacted["transactionInfo"] == {"transactionId": "T1"}


@pytest.mark.parametrize(
    ("keep", "token", "masked"),
    [
        (4, "ABCD1234", "****1234"),
        (4, "1234", "****34"),
        (4, "AB", "****B"),
        (4, "A", "****"),
        (4, "", "****"),
        (2, "ABCD1234", "****34"),
        (0, "ABCD1234", "****"),
    ],
)
def test_a_token_keeps_at_most_keep_characters_and_never_more_than_half(
    keep: int, token: str, masked: str
) -> None:
    assert ocpprpc.Redactor(keep=keep).mask(token) == masked
    assert ocpprpc.Redactor(keep=keep)({"idTag": token}) == {"idTag": masked}


def test_id_token_shapes_of_every_version() -> None:
    redact = ocpprpc.Redactor()
    # 1.6: idTag, parentIdTag inside idTagInfo, a local list
    assert redact(
        {
            "listVersion": 3,
            "localAuthorizationList": [
                {"idTag": "CARD00000001", "idTagInfo": {"status": "Accepted", "parentIdTag": "GROUP0000001"}}
            ],
        }
    ) == {
        "listVersion": 3,
        "localAuthorizationList": [
            {"idTag": "****0001", "idTagInfo": {"status": "Accepted", "parentIdTag": "****0001"}}
        ],
    }
    # 2.x: IdTokenType (its type stays readable), groupIdToken, additionalInfo
    assert redact(
        {
            "idToken": {
                "idToken": "04A1B2C3D4",
                "type": "ISO14443",
                "additionalInfo": [{"additionalIdToken": "EMAID12345678", "type": "eMAID"}],
            },
            "idTokenInfo": {
                "status": "Accepted",
                "groupIdToken": {"idToken": "GROUP-7777", "type": "Central"},
            },
        }
    ) == {
        "idToken": {
            "idToken": "****C3D4",
            "type": "ISO14443",
            "additionalInfo": [{"additionalIdToken": "****5678", "type": "eMAID"}],
        },
        "idTokenInfo": {"status": "Accepted", "groupIdToken": {"idToken": "****7777", "type": "Central"}},
    }
    # 2.1 GetTariffs: a list of token strings
    assert redact({"idTokens": ["TOKEN-AAAA", "TOKEN-BBBB"]}) == {"idTokens": ["****AAAA", "****BBBB"]}


def test_secrets_are_replaced_whole() -> None:
    redact = ocpprpc.Redactor()
    profile = {
        "configurationSlot": 1,
        "connectionData": {
            "ocppCsmsUrl": "wss://csms.example/ocpp",
            "apn": {
                "apn": "internet",
                "apnPassword": "apn-secret",
                "simPin": 1234,
                "apnAuthentication": "AUTO",
            },
            "vpn": {
                "server": "vpn.example",
                "user": "me",
                "password": "vpn-pass",
                "key": "shared-key",
                "type": "IPSec",
            },
            "basicAuthPassword": "station-pass",
        },
    }
    text = json.dumps(redact(profile))
    for secret in ("apn-secret", "1234", "vpn-pass", "shared-key", "station-pass"):
        assert secret not in text
    assert "wss://csms.example/ocpp" in text and "vpn.example" in text and "AUTO" in text
    # "key" is a secret only inside "vpn": a 1.6 configuration key name stays readable
    assert redact({"key": "HeartbeatInterval", "value": "300"}) == {
        "key": "HeartbeatInterval",
        "value": "300",
    }
    assert redact({"csr": "-----BEGIN CERTIFICATE REQUEST-----", "certificate": None}) == {
        "csr": "****",
        "certificate": None,
    }


def test_secret_settings_of_every_version() -> None:
    redact = ocpprpc.Redactor()
    # 1.6 ChangeConfiguration and GetConfiguration.conf
    assert redact({"key": "AuthorizationKey", "value": "0011223344556677"}) == {
        "key": "AuthorizationKey",
        "value": "****",
    }
    answer = {
        "configurationKey": [
            {"key": "AuthorizationKey", "readonly": False, "value": "0011223344556677"},
            {"key": "HeartbeatInterval", "readonly": False, "value": "300"},
        ]
    }
    assert redact(answer)["configurationKey"] == [
        {"key": "AuthorizationKey", "readonly": False, "value": "****"},
        {"key": "HeartbeatInterval", "readonly": False, "value": "300"},
    ]
    # 2.x SetVariables / GetVariables
    set_variables = {
        "setVariableData": [
            {
                "attributeValue": "station-password-16",
                "component": {"name": "SecurityCtrlr"},
                "variable": {"name": "BasicAuthPassword"},
            },
            {
                "attributeValue": "60",
                "component": {"name": "OCPPCommCtrlr"},
                "variable": {"name": "HeartbeatInterval"},
            },
        ]
    }
    out = redact(set_variables)["setVariableData"]
    assert out[0]["attributeValue"] == "****" and out[1]["attributeValue"] == "60"
    # 2.x NotifyReport: the values sit in variableAttribute
    report = {
        "reportData": [
            {
                "component": {"name": "SecurityCtrlr"},
                "variable": {"name": "BasicAuthPassword"},
                "variableAttribute": [{"type": "Actual", "value": "station-password-16"}, "odd"],
            }
        ]
    }
    assert redact(report)["reportData"][0]["variableAttribute"] == [
        {"type": "Actual", "value": "****"},
        "****",
    ]
    odd = {"variable": {"name": "BasicAuthPassword"}, "variableAttribute": "station-password-16"}
    assert redact(odd)["variableAttribute"] == "****"
    # configurable
    custom = ocpprpc.Redactor(secret_settings={"MyVendorSecret"})
    assert custom({"key": "MyVendorSecret", "value": "x"})["value"] == "****"
    assert custom({"key": "AuthorizationKey", "value": "x"})["value"] == "x"


def test_fields_are_configurable_including_parent_dot_child() -> None:
    redact = ocpprpc.Redactor(fields={"cardNumber", "driver.name"}, secrets=(), keep=2)
    assert redact({"cardNumber": "12345678", "name": "site", "driver": {"name": "Alice"}, "idTag": "X"}) == {
        "cardNumber": "****78",
        "name": "site",
        "driver": {"name": "****ce"},
        "idTag": "X",
    }


def test_never_mutates_and_keeps_non_sensitive_values() -> None:
    payload = {"idTag": "ABCD1234", "meterStart": 10, "list": [{"idTag": "EFGH5678"}], "nested": ("a", 1)}
    copy = json.loads(json.dumps(payload))
    redacted = ocpprpc.Redactor()(payload)
    assert payload == {**copy, "nested": ("a", 1)}
    assert redacted == {
        "idTag": "****1234",
        "meterStart": 10,
        "list": [{"idTag": "****5678"}],
        "nested": ["a", 1],
    }


def test_token_fields_holding_odd_values() -> None:
    redact = ocpprpc.Redactor()
    assert redact({"idTag": 12345678}) == {"idTag": "****5678"}
    assert redact({"idTag": 1.5}) == {"idTag": "****5"}
    assert redact({"idTag": None, "parentIdTag": True}) == {"idTag": None, "parentIdTag": True}
    assert redact({"idTag": [["ABCD1234"]]}) == {"idTag": [["****1234"]]}


def test_hostile_inputs_never_raise_and_leak_nothing() -> None:
    redact = ocpprpc.Redactor(max_depth=10)
    deep: Any = {"idTag": "DEEPSECRET99"}
    for _ in range(5000):
        deep = {"a": [deep]}
    out = json.dumps(redact(deep))
    assert "DEEPSECRET99" not in out and "nested too deeply" in out
    # a token list nested past the limit
    tokens: Any = "LISTSECRET99"
    for _ in range(50):
        tokens = [tokens]
    assert "LISTSECRET99" not in json.dumps(redact({"idTag": tokens}))
    # a cycle
    cycle: dict[str, Any] = {"idTag": "CYCLESECRET1"}
    cycle["self"] = cycle
    assert "CYCLESECRET1" not in json.dumps(redact(cycle))
    # a huge array
    huge = {"localAuthorizationList": [{"idTag": f"CARD{i:08d}"} for i in range(100_000)]}
    assert redact(huge)["localAuthorizationList"][-1] == {"idTag": "****9999"}
    # not objects at all
    for value in (None, 1, "text", [1, "a"], 2.5, True):
        assert redact(value) == value
    assert redact(object()) == "<redacted: not a JSON value>"
    assert redact({"idTag": object()})["idTag"] == "<redacted: not a JSON value>"
    assert redact({1: "a", None: {"idTag": "ABCD1234"}}) == {1: "a", None: {"idTag": "****1234"}}
    # JSON text that is not JSON, or too deep for the decoder
    assert redact.redact_json('{"idTag": "BROKEN-SECRET"') == '"<redacted: 25 characters that are not JSON>"'
    assert "SECRET" not in redact.redact_json("[" * 100_000)
    assert redact.redact_json(b"\xff\xfe") == '"<redacted: 2 characters that are not JSON>"'
    assert redact.redact_json("[1, 2]") == "[1,2]"


@settings(max_examples=300, deadline=None)
@given(
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=8),
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(
                st.sampled_from(
                    ["idTag", "idToken", "key", "value", "variable", "name", "variableAttribute", "x", "vpn"]
                ),
                children,
                max_size=4,
            )
        ),
        max_leaves=30,
    )
)
def test_any_json_value_is_redacted_without_raising(value: Any) -> None:
    redact = ocpprpc.Redactor()
    out = redact(value)
    json.dumps(out)
    text = json.dumps(value)
    assert json.loads(redact.redact_json(text)) == redact(json.loads(text))


def test_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="keep"):
        ocpprpc.Redactor(keep=-1)
    with pytest.raises(ValueError, match="max_depth"):
        ocpprpc.Redactor(max_depth=0)
    assert repr(ocpprpc.Redactor()) == "<Redactor keep=4 fields=5>"


def test_default_lists_are_exported() -> None:
    assert "idTag" in ocpprpc.ID_TOKEN_FIELDS and "idToken" in ocpprpc.ID_TOKEN_FIELDS
    assert "vpn.key" in ocpprpc.SECRET_FIELDS
    assert "AuthorizationKey" in ocpprpc.SECRET_SETTINGS
