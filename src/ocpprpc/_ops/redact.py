"""Redaction: id tokens and secrets out of payloads before they are logged or stored.

A payload is walked as JSON values (dicts and lists, any depth); a field is
redacted by *name*, wherever it sits, so one rule covers every action that
carries it.  The defaults come from the schemas of every version:

* id tokens, masked but for their last characters (so a log line can still be
  matched to a card): 1.6 ``idTag`` and ``parentIdTag`` (``idTagInfo`` holds a
  ``parentIdTag``, so it needs no rule of its own); 2.0.1/2.1 ``idToken``
  (the string inside every ``IdTokenType``, ``groupIdToken`` included),
  ``additionalIdToken`` and 2.1's ``idTokens`` list;
* secrets, replaced whole: the SetNetworkProfile ``password``,
  ``apnPassword``, ``basicAuthPassword``, ``simPin`` and ``vpn.key``; the
  certificates, chains, CSRs and ISO 15118 EXI blobs (public material, but
  large, and a contract certificate names a driver's contract);
* secret *settings*, whose value sits next to their name: 1.6
  ``{"key": "AuthorizationKey", "value": ...}`` (ChangeConfiguration,
  GetConfiguration) and 2.x ``{"variable": {"name": "BasicAuthPassword"},
  "attributeValue": ...}`` (SetVariables, GetVariables) or ``variableAttribute[].value``
  (NotifyReport).

The walk never mutates what it is given and never raises: a subtree deeper
than ``max_depth`` and a value it cannot represent become a marker, text that
is not JSON becomes a marker naming its length (it might hold a token).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

import msgspec

__all__ = [
    "ID_TOKEN_FIELDS",
    "MASK",
    "SECRET_FIELDS",
    "SECRET_SETTINGS",
    "Redactor",
]

#: What a redacted value starts with (the whole value, for a secret).
MASK: Final = "****"
#: Id-token fields of every version (masked, their last ``keep`` characters shown).
ID_TOKEN_FIELDS: Final = frozenset({"idTag", "parentIdTag", "idToken", "additionalIdToken", "idTokens"})
#: Secret fields (replaced whole); ``parent.child`` names a field only inside that parent.
SECRET_FIELDS: Final = frozenset(
    {
        "password",
        "apnPassword",
        "basicAuthPassword",
        "simPin",
        "vpn.key",
        "certificate",
        "certificateChain",
        "signingCertificate",
        "csr",
        "exiRequest",
        "exiResponse",
    }
)
#: Configuration keys (1.6) and variables (2.x) whose values are secrets.
SECRET_SETTINGS: Final = frozenset({"AuthorizationKey", "BasicAuthPassword"})

_TOO_DEEP: Final = "<redacted: nested too deeply>"
_UNREPRESENTABLE: Final = "<redacted: not a JSON value>"
_SCALARS = (str, int, float, bool, type(None))


class _Rules:
    """Field names split into plain names and ``(parent, child)`` pairs."""

    def __init__(self, names: Iterable[str]) -> None:
        names = set(names)
        self.plain = frozenset(name for name in names if "." not in name)
        self.nested = frozenset(tuple(name.split(".", 1)) for name in names if "." in name)

    def match(self, parent: object, key: object) -> bool:
        return key in self.plain or (parent, key) in self.nested


class Redactor:
    """Masks id tokens and replaces secrets in payloads, by field name.

    ::

        redact = ocpprpc.Redactor()
        redact({"idTag": "ABCD1234"})  # {"idTag": "****1234"}

    :param fields: id-token field names: their values are masked, the last
        *keep* characters kept.  ``parent.child`` matches ``child`` only in the
        object under ``parent``.
    :param secrets: field names whose values are replaced whole.
    :param secret_settings: configuration keys and variable names whose
        values are secrets (see the module docstring).
    :param keep: characters of an id token left visible at its end (never
        more than half of it); ``0`` masks it whole.
    :param max_depth: nesting beyond which a subtree is replaced whole.
    """

    def __init__(
        self,
        fields: Iterable[str] = ID_TOKEN_FIELDS,
        *,
        secrets: Iterable[str] = SECRET_FIELDS,
        secret_settings: Iterable[str] = SECRET_SETTINGS,
        keep: int = 4,
        max_depth: int = 64,
    ) -> None:
        if keep < 0:
            raise ValueError("keep must be 0 or more")
        if max_depth < 1:
            raise ValueError("max_depth must be at least 1")
        self._tokens = _Rules(fields)
        self._secrets = _Rules(secrets)
        self.secret_settings = frozenset(secret_settings)
        self.keep = keep
        self.max_depth = max_depth

    def __call__(self, payload: Any) -> Any:
        """A redacted copy of *payload* (JSON values or a msgspec Struct); never raises."""
        return self._walk(payload, None, 0)

    def redact_json(self, text: str | bytes) -> str:
        """*text* (a JSON document) redacted, as JSON text; never raises.

        Text that is not JSON comes back as a JSON string naming its length only.
        """
        try:
            value = msgspec.json.decode(text)
        except (msgspec.DecodeError, RecursionError):
            value = f"<redacted: {len(text)} characters that are not JSON>"
        return msgspec.json.encode(self._walk(value, None, 0)).decode()

    def mask(self, token: str) -> str:
        """*token* masked: ``"ABCD1234"`` -> ``"****1234"`` (with ``keep=4``)."""
        shown = min(self.keep, len(token) // 2)
        return MASK + token[len(token) - shown :] if shown else MASK

    # -- the walk ------------------------------------------------------------------------------

    def _walk(self, value: Any, parent: object, depth: int) -> Any:
        if depth > self.max_depth:
            return _TOO_DEEP
        if isinstance(value, Mapping):
            return self._object(value, parent, depth)
        if isinstance(value, list | tuple):
            return [self._walk(item, parent, depth + 1) for item in value]
        if isinstance(value, _SCALARS):
            return value
        try:  # a msgspec Struct (wire names), a dataclass, a datetime...
            builtins = msgspec.to_builtins(value)
        except (TypeError, ValueError, RecursionError):
            return _UNREPRESENTABLE
        return self._walk(builtins, parent, depth)

    def _object(self, value: Mapping[Any, Any], parent: object, depth: int) -> dict[Any, Any]:
        setting = self._is_secret_setting(value)
        out: dict[Any, Any] = {}
        for key, item in value.items():
            if self._secrets.match(parent, key) or (setting and key in ("value", "attributeValue")):
                out[key] = self._secret(item)
            elif setting and key == "variableAttribute":
                out[key] = self._variable_attributes(item, depth + 1)
            elif self._tokens.match(parent, key):
                out[key] = self._token(item, key, depth + 1)
            else:
                out[key] = self._walk(item, key, depth + 1)
        return out

    def _is_secret_setting(self, value: Mapping[Any, Any]) -> bool:
        key = value.get("key")
        variable = value.get("variable")
        name = variable.get("name") if isinstance(variable, Mapping) else None
        return any(isinstance(each, str) and each in self.secret_settings for each in (key, name))

    def _variable_attributes(self, value: Any, depth: int) -> Any:
        if not isinstance(value, list | tuple):
            return self._secret(value)
        return [
            {
                key: self._secret(v) if key == "value" else self._walk(v, key, depth + 1)
                for key, v in each.items()
            }
            if isinstance(each, Mapping)
            else self._secret(each)
            for each in value
        ]

    def _token(self, value: Any, key: object, depth: int) -> Any:
        if isinstance(value, str):
            return self.mask(value)
        if isinstance(value, bool) or value is None:
            return value
        if isinstance(value, int | float):
            return self.mask(str(value))
        if isinstance(value, list | tuple):
            if depth > self.max_depth:
                return _TOO_DEEP
            return [self._token(item, key, depth + 1) for item in value]
        # an IdTokenType object: its own ``idToken`` string is a token field again
        return self._walk(value, key, depth)

    @staticmethod
    def _secret(value: Any) -> Any:
        return None if value is None else MASK

    def __repr__(self) -> str:
        return f"<Redactor keep={self.keep} fields={len(self._tokens.plain) + len(self._tokens.nested)}>"
