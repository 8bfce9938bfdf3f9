"""Sphinx configuration.  The rules table is generated from ocpprpc._engine.rules at build time."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent / "src"))

from ocpprpc import BUILTIN_RULES, ErrorCode, MessageType, __version__  # noqa: E402

project = "ocpprpc"
author = "The ocpprpc developers"
copyright = "2026, The ocpprpc developers"
release = version = __version__
extensions = ["sphinx.ext.autodoc", "sphinx.ext.intersphinx"]
intersphinx_mapping: dict[str, tuple[str, str | None]] = {}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
nitpicky = False
exclude_patterns = ["_build", "examples", "_generated"]
html_theme = "alabaster"
default_role = "literal"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = [".. list-table::", "   :header-rows: 1", ""]
    for row in [header, *rows]:
        lines.append(f"   * - {row[0]}")
        lines.extend(f"     - {cell}" for cell in row[1:])
    return "\n".join(lines) + "\n"


def _reply_id(reply_id: str | None) -> str:
    return f"``{reply_id}``" if reply_id else "no answer"


def _bad_result(answered: bool) -> str:
    return "CALLRESULTERROR" if answered else "no answer; the caller fails"


def _write_rules_table() -> None:
    versions = list(BUILTIN_RULES.values())
    header = ["rule", *[f"``{r.protocol}``" for r in versions]]
    rows = [
        ["message types", *[", ".join(t.name for t in sorted(r.message_types)) for r in versions]],
        ["unknown message type", *[r.unknown_message_type.name for r in versions]],
        ["id of the answer to an unreadable message", *[_reply_id(r.unreadable_id_reply) for r in versions]],
        ["malformed CALL frame", *[f"``{r.spell(r.frame_error)}``" for r in versions]],
        ["CALL payload not an object", *[f"``{r.spell(r.payload_not_object)}``" for r in versions]],
        ["duplicate CALL id in progress", *[f"``{r.spell(r.duplicate_call)}``" for r in versions]],
        ["unprocessable CALLRESULT", *[_bad_result(r.answer_invalid_result) for r in versions]],
        ["max message id length", *[str(r.max_message_id_length) for r in versions]],
        ["max errorDescription length", *[str(r.max_error_description_length) for r in versions]],
        ["our CALLs in flight (default)", *[str(r.default_max_outstanding_calls) for r in versions]],
    ]
    spellings = [[f"``{code.name}``", *[f"``{r.spell(code)}``" for r in versions]] for code in ErrorCode]
    out = HERE / "_generated"
    out.mkdir(exist_ok=True)
    (out / "rules.rst").write_text(_table(header, rows))
    (out / "spellings.rst").write_text(_table(["ErrorCode", *header[1:]], spellings))
    assert MessageType.SEND.value == 6  # (the table lists names; the numbers are in MessageType)


_write_rules_table()


def _document_inherited_like_own(app: object) -> None:
    """Methods a public class inherits from a private mixin render as if defined on it.

    autodoc looks a method's overloads and its place in ``bysource`` order up
    under ``Class.method`` in the source of the module that defines it; for
    ``Station.call`` (defined on ``ocpprpc._station.calls._Calls``) neither
    is found.  Register them under the public class's name: inherited methods
    follow the class's own, nearest mixin first, each in its source order.
    """
    import inspect

    from sphinx.pycode import ModuleAnalyzer

    import ocpprpc

    for name in ocpprpc.__all__:
        cls = getattr(ocpprpc, name)
        if not inspect.isclass(cls) or not cls.__module__.startswith("ocpprpc."):
            continue
        own = ModuleAnalyzer.for_module(cls.__module__)
        own.analyze()
        for depth, base in enumerate(cls.__mro__[1:], start=1):
            if not base.__module__.startswith("ocpprpc.") or not base.__name__.startswith("_"):
                continue
            theirs = ModuleAnalyzer.for_module(base.__module__)
            theirs.analyze()
            prefix = base.__qualname__ + "."
            for key, signatures in list(theirs.overloads.items()):
                if key.startswith(prefix):
                    theirs.overloads.setdefault(cls.__qualname__ + "." + key.removeprefix(prefix), signatures)
            for key, order in theirs.tagorder.items():
                if key.startswith(prefix):
                    own.tagorder.setdefault(
                        cls.__qualname__ + "." + key.removeprefix(prefix), 100_000 * depth + order
                    )


def setup(app: object) -> None:
    app.connect("builder-inited", _document_inherited_like_own)  # type: ignore[attr-defined]
