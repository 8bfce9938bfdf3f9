"""The parts of ocpprpc and the arrows between them, enforced (docs/architecture.rst).

Two checks per part: statically, every import in its modules (including the lazy ones
inside functions and the ``TYPE_CHECKING`` ones) points at a part it may use; and at run
time, importing all its modules in a fresh interpreter (with the package's ``__init__``
left out, so only the part's own imports count) loads no forbidden library and no
forbidden part.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "ocpprpc"

# part -> the parts it may import (besides itself).  "public" is the package face
# (ocpprpc/__init__.py, testing.py, trio_websocket.py, __main__.py); "versions" is v16/v201/v21.
ARROWS: dict[str, set[str]] = {
    "_engine": set(),
    "_typed": {"_engine"},
    "_options": set(),
    "_ws": {"_options"},
    "_rpc": {"_engine", "_typed", "_ws.transport"},
    "_station": {"_engine", "_typed", "_rpc", "_ws", "_options", "_ops"},
    # cluster: the CSMS plugs the cluster adapter into its Delivery seam (_csms/cluster_delivery.py).
    "_csms": {"_engine", "_typed", "_rpc", "_ws", "_options", "_ops", "cluster"},
    # cluster: serve --cluster builds the Redis adapter, and SendStatus names cluster outcomes.
    "_cli": {
        "_engine",
        "_typed",
        "_rpc",
        "_ws",
        "_options",
        "_station",
        "_csms",
        "_ops",
        "cluster",
        "versions",
    },
    "_ops": set(),
    "cluster": {"_engine", "_typed", "_rpc", "_options"},
    "plugins": {"public"},
    "versions": {"_typed"},
    "public": {"_engine", "_typed", "_rpc", "_ws", "_options", "_station", "_csms", "_cli", "_ops", "cluster"}
    | {"versions"},
}
# Libraries a part must never load.  trio: nowhere but ocpprpc.trio_websocket.
IO = {"anyio", "asyncio", "trio", "socket", "ssl", "wsproto", "websockets", "sqlite3"}
NEVER_LOADS: dict[str, set[str]] = {
    "_engine": IO,
    "_typed": IO,
    "_options": IO,
    "versions": IO,
    "_ws": {"trio"},
    "_rpc": {"trio", "wsproto", "websockets", "ssl", "sqlite3"},
    "_station": {"trio"},
    "_csms": {"trio"},
    "_cli": {"trio"},
    # operations: anyio and sqlite3 in its SQLite store only (tests/ops checks the rest loads neither)
    "_ops": IO - {"anyio", "sqlite3"},
    "cluster": {"trio"},
    "plugins": {"trio"},
}
VERSIONS = {"v16", "v201", "v21"}


def part_of(module: str) -> str:
    """``ocpprpc._ws.tcp`` -> ``_ws``; the package face and its modules -> ``public``."""
    parts = module.split(".")
    if len(parts) == 1:
        return "public"
    if parts[1] in VERSIONS:
        return "versions"
    if (PACKAGE / parts[1]).is_dir():
        return parts[1]
    return "public"


def modules_on_disk() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        name = ".".join(relative.parts)
        found[name.removesuffix(".__init__")] = path
    return found


def imports_of(module: str, path: Path) -> set[str]:
    """Every ocpprpc module *module* imports, wherever the import statement is."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "ocpprpc"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            elif (node.module or "").split(".")[0] == "ocpprpc":
                target = node.module or ""
            else:
                continue
            on_disk = modules_on_disk()
            names = [f"{target}.{alias.name}" for alias in node.names]
            found |= {name for name in names if name in on_disk} or {target}
    return found


def allowed(source: str, target: str) -> bool:
    target_part = part_of(target)
    if target_part == source or target == "ocpprpc._version":
        # _version is a leaf (one string, no imports): any part may report the version (/health does).
        return True
    rules = ARROWS[source]
    # "_ws.transport": only that module of the part (and the part's docstring-only __init__)
    one_module = [f"ocpprpc.{rule}" for rule in rules if "." in rule]
    return (
        target_part in rules
        or any(target.startswith(name) for name in one_module)
        or any(name.startswith(target + ".") for name in one_module)
    )


def test_every_part_has_rules() -> None:
    parts = {path.name for path in PACKAGE.iterdir() if (path / "__init__.py").is_file()} - VERSIONS
    assert parts == set(ARROWS) - {"public", "versions"}, "a new part needs a row in ARROWS and NEVER_LOADS"
    assert set(NEVER_LOADS) == set(ARROWS) - {"public"}


def test_every_import_follows_an_arrow() -> None:
    wrong = []
    for module, path in modules_on_disk().items():
        source = part_of(module)
        targets = imports_of(module, path)
        wrong += [f"{module} -> {target}" for target in sorted(targets) if not allowed(source, target)]
    assert wrong == []


def test_only_main_imports_the_cli() -> None:
    importers = [
        module
        for module, path in modules_on_disk().items()
        if part_of(module) != "_cli" and any(part_of(t) == "_cli" for t in imports_of(module, path))
    ]
    assert importers == ["ocpprpc.__main__"]


def test_only_trio_websocket_imports_trio() -> None:
    importers = []
    for module, path in modules_on_disk().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            if any(name.split(".")[0] in {"trio", "trio_websocket"} for name in names):
                importers.append(module)
    assert set(importers) == {"ocpprpc.trio_websocket"}


LOAD_PART = """
import importlib, json, pathlib, sys, types
package = types.ModuleType("ocpprpc")  # the face (__init__) stays out: only the part's own imports count
package.__path__ = [{package!r}]
sys.modules["ocpprpc"] = package
for name in {modules!r}:
    importlib.import_module(name)
print(json.dumps(sorted(sys.modules)))
"""


@pytest.mark.parametrize("part", sorted(set(ARROWS) - {"public"}))
def test_a_part_alone_loads_only_what_it_may(part: str) -> None:
    modules = sorted(name for name in modules_on_disk() if part_of(name) == part)
    code = LOAD_PART.format(package=str(PACKAGE), modules=modules)
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    loaded = set(json.loads(out.stdout))
    libraries = {name.split(".")[0] for name in loaded} & NEVER_LOADS[part]
    assert libraries == set(), f"{part} loads {sorted(libraries)}"
    parts = {name for name in loaded if name.startswith("ocpprpc.") and not allowed(part, name)}
    assert parts == set(), f"{part} loads {sorted(parts)}"


def test_the_architecture_page_names_every_part() -> None:
    page = (ROOT / "docs" / "architecture.rst").read_text(encoding="utf-8")
    parts = {path.name for path in PACKAGE.iterdir() if (path / "__init__.py").is_file()} - VERSIONS
    missing = sorted(part for part in parts if f"``{part}/``" not in page)
    assert missing == [], "docs/architecture.rst does not describe these parts"


def test_the_session_depends_on_the_dispatch_interface_not_the_router() -> None:
    """No cycle: the router implements _rpc.dispatch, the session uses only that."""
    modules = modules_on_disk()
    session = imports_of("ocpprpc._rpc.session", modules["ocpprpc._rpc.session"])
    router = imports_of("ocpprpc._rpc.router", modules["ocpprpc._rpc.router"])
    assert "ocpprpc._rpc.router" not in session
    assert "ocpprpc._rpc.session" not in router
