"""Move the flat ``src/ocpprpc/_*.py`` modules into one subpackage per part (issue 13).

Run from a clean checkout: ``python tools/relayout.py``.  It ``git mv``s every module
named in ``MODULES`` (so ``git log --follow`` keeps each file's history), moves the test
folders named in ``TEST_DIRS``/``TEST_FILES``, writes each part's ``__init__.py``, and
rewrites every reference to an old place:

* relative imports (``from ._x import a``, ``from . import _x``) and relative module
  strings (``"._x"`` handed to ``importlib.import_module``), re-emitted relative to the
  importing file's new package;
* dotted names ``ocpprpc._x`` anywhere in src/, tests/, bench/, docs/, tools/, the README,
  noxfile.py and pyproject.toml (absolute imports, monkeypatch targets, ``sys.modules``
  keys, Sphinx cross-references), and ``tests.<dir>`` / ``tests/<dir>/`` for moved tests;
* file paths ``src/ocpprpc/_x.py`` and bare ``_x.py`` mentions;
* quoted module stems in noxfile.py (the coverage gates: ``"_codec"`` -> ``"_engine/codec"``);
* ``Path(__file__).parent...`` chains in files that move deeper.

Log names do not change: a module that logged as ``getLogger(__name__)`` gets its old name
spelled out, and a string literal that is exactly such a log name is left alone.

It refuses to run (and changes nothing) when a ``src/ocpprpc/_*.py`` module or a test
folder has no row in the tables: add one line for the new module and run it again.
Afterwards it sorts imports and formats the touched Python files with ruff.  Check the
result with the full test suite, ``ruff check .``, ``ruff format --check .``,
``mypy --strict`` and the Sphinx build.
"""

from __future__ import annotations

import argparse
import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "ocpprpc"
SRC = ROOT / "src" / PACKAGE

# -- the tables: one line per module --------------------------------------------------------
# old module stem -> new path inside src/ocpprpc (without .py); None: stays where it is.
MODULES: dict[str, str | None] = {
    # _engine: the sans-IO OCPP-J engine
    "_codec": "_engine/codec",
    "_connection": "_engine/connection",
    "_errors": "_engine/errors",
    "_events": "_engine/events",
    "_frames": "_engine/frames",
    "_rules": "_engine/rules",
    # _typed: typed messages, schemas, strict validation
    "_messages": "_typed/messages",
    "_schema": "_typed/schema",
    "_validation": "_typed/validation",
    "_sample": "_typed/sample",
    "_quirks": "_typed/quirks",
    # _rpc: the anyio session and handler dispatch
    "_session": "_rpc/session",
    "_router": "_rpc/router",
    "_protocols": "_rpc/protocols",
    "_groups": "_rpc/groups",
    # _ws: WebSocket transport (knows no OCPP)
    "_transport": "_ws/transport",
    "_handshake": "_ws/handshake",
    "_websocket": "_ws/websocket",
    "_websockets_codec": "_ws/websockets_codec",
    "_wsproto_codec": "_ws/wsproto_codec",
    "_ws_errors": "_ws/errors",
    "_aio_stream": "_ws/aio_stream",
    "_raw_stream": "_ws/raw_stream",
    "_tcp": "_ws/tcp",
    "_tls": "_ws/tls",
    "_keepalive": "_ws/keepalive",
    # _options: plain settings shared by station and CSMS
    "_policies": "_options/policies",
    # _station: the charging-station side
    "_client": "_station/client",
    "_station": "_station/station",
    "_outbox": "_station/outbox",
    # _csms: the CSMS side
    "_server": "_csms/server",
    "_csms_guard": "_csms/guard",
    "_auth": "_csms/auth",
    "_admission": "_csms/admission",
    "_ratelimit": "_csms/ratelimit",
    "_security_events": "_csms/security_events",
    # _cli: python -m ocpprpc
    "_cli": "_cli/commands",
    "_demo": "_cli/demo",
    "_scenario": "_cli/scenario",
    # stays: read by the build backend at this path (pyproject [tool.hatch.version])
    "_version": None,
}

# old folder under tests/ -> new folder (mirroring the parts); every folder needs a row.
TEST_DIRS: dict[str, str] = {
    "core": "engine",
    "typed": "typed",
    "session": "rpc",
    "transport": "ws",
    "resilience": "station",
    "integration": "csms",
    "interop": "interop",
    "faults": "faults",
    "trio_ws": "trio_ws",
    "cli": "cli",
}
# single test modules that move (top-level ones not named here stay).
TEST_FILES: dict[str, str] = {
    "test_cli.py": "cli/test_cli.py",
}

# Each part's __init__: what it is, what it may import, what it must never import.
PARTS: dict[str, str] = {
    "_engine": """The sans-IO OCPP-J engine: frames, rules, events, errors, the payload codec seam.

May import: the standard library and msgspec, and its own modules.
Never imports: anything doing I/O (anyio, asyncio, trio, socket, ssl, wsproto, websockets)
and no other part of ocpprpc.  Held to 100% branch coverage.
""",
    "_typed": """Typed OCPP messages: schema loading, the type model, strict validation.

May import: the standard library, msgspec and :mod:`ocpprpc._engine`.
Never imports: anything doing I/O (anyio, asyncio, trio, socket, ssl) and no part above it
(_rpc, _ws, _station, _csms, _cli).  The generated ``ocpprpc.v16``/``v201``/``v21`` build on it.
""",
    "_rpc": """The RPC layer: the anyio session that drives one engine, the router, handler dispatch.

May import: anyio, :mod:`ocpprpc._engine`, :mod:`ocpprpc._typed`, and from :mod:`ocpprpc._ws`
only the message-stream seam (:mod:`ocpprpc._ws.transport`).
Never imports: the WebSocket implementation, sockets, TLS, trio, or the station/CSMS/CLI parts.
""",
    "_ws": """The WebSocket transport: handshake, the WebSocket stream, frame codecs, byte streams,
TCP, TLS, keepalive, and the message-stream seam the session reads.

May import: anyio, wsproto, websockets' sans-IO protocol, sockets and ssl,
and :mod:`ocpprpc._options` (plain settings).
Never imports: anything that knows OCPP (_engine, _typed, _rpc) nor the parts above it
(_station, _csms, _cli), nor trio.
""",
    "_options": """Settings shared by the station and the CSMS: plain frozen dataclasses.

May import: the standard library only.
Never imports: anyio, any I/O library, or any other part of ocpprpc.
""",
    "_station": """The charging-station side: connect(), the reconnecting Station, outbox stores.

May import: anyio, sqlite3, _engine, _typed, _rpc, _ws, _options.
Never imports: _csms or _cli, nor trio.
""",
    "_csms": """The CSMS side: Server, serve(), station admission and the CSMS guards.

May import: anyio, _engine, _typed, _rpc, _ws, _options.
Never imports: _station or _cli, nor trio.
""",
    "_cli": """``python -m ocpprpc``: the command line, the demo CSMS and the station scenario.

May import: every other part (it is the top of the stack).
Nothing else in ocpprpc imports it (except ``__main__``).
""",
    "cluster": """The clustering seam (empty until the clustering issue adds the adapter).

May import: anyio, _engine, _typed, _rpc, _options.
Never imports: _cli.
""",
    "plugins": """Plugins (empty until the plugins issue).

May import: the public ``ocpprpc`` API.
Never imports: _cli.
""",
}

# Where references are rewritten (relative to the repository root).
TEXT_ROOTS = ["src", "tests", "bench", "docs", "tools", "fuzz", "noxfile.py", "pyproject.toml", "README.md"]
TEXT_SUFFIXES = {".py", ".rst", ".md", ".toml", ".txt", ".sh", ".cfg", ".ini", ".yml", ".yaml"}
SKIP_PARTS = {"_build", "_generated", "__pycache__"}


class RelayoutError(Exception):
    """The tree is not one this script can move (a missing table row, an unknown pattern)."""


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout


# -- planning -------------------------------------------------------------------------------


class Plan:
    """Old and new dotted names of every moved module, and the file moves."""

    def __init__(self) -> None:
        self.file_moves: list[tuple[str, str]] = []  # repo-relative old path -> new path
        self.modules: dict[str, str] = {}  # old dotted module -> new dotted module
        self.packages: dict[str, str] = {}  # old dotted package prefix -> new prefix
        self.new_test_dirs: set[str] = set()
        self.check_tables()
        # every module and package of the old tree, to re-aim relative references to them
        tracked = git("ls-files", "src", "tests").split()
        self.known = {dotted(path)[0] for path in tracked if path.endswith(".py")}
        for stem, target in MODULES.items():
            if target is None:
                continue
            self.file_moves.append((f"src/{PACKAGE}/{stem}.py", f"src/{PACKAGE}/{target}.py"))
            self.modules[f"{PACKAGE}.{stem}"] = f"{PACKAGE}.{target.replace('/', '.')}"
        for old, new in TEST_DIRS.items():
            if old != new:
                self.file_moves.append((f"tests/{old}", f"tests/{new}"))
                self.packages[f"tests.{old}"] = f"tests.{new}"
        for old, new in TEST_FILES.items():
            self.file_moves.append((f"tests/{old}", f"tests/{new}"))
            self.modules[f"tests.{old[:-3]}"] = "tests." + new[:-3].replace("/", ".")
            if "/" in new:
                self.new_test_dirs.add("tests/" + new.rsplit("/", 1)[0])

    def check_tables(self) -> None:
        tests = ROOT / "tests"
        problems = [
            f"src/{PACKAGE}/{path.name}: no row in MODULES (tools/relayout.py)"
            for path in sorted(SRC.glob("_*.py"))
            if path.stem not in MODULES and not path.stem.startswith("__")
        ]
        problems += [
            f"MODULES names {stem}.py, which is not in src/{PACKAGE}/"
            for stem in MODULES
            if not (SRC / f"{stem}.py").is_file()
        ]
        problems += [
            f"MODULES sends {stem} to {target}: no such part in PARTS"
            for stem, target in MODULES.items()
            if target is not None and target.split("/")[0] not in PARTS
        ]
        problems += [
            f"src/{PACKAGE}/{part} exists already: has the move been done?"
            for part in PARTS
            if (SRC / part).exists()
        ]
        problems += [
            f"tests/{path.name}/: no row in TEST_DIRS (tools/relayout.py)"
            for path in sorted(tests.iterdir())
            if path.is_dir() and path.name not in SKIP_PARTS and path.name not in TEST_DIRS
        ]
        problems += [
            f"TEST_FILES names tests/{old}, which is missing"
            for old in TEST_FILES
            if not (tests / old).is_file()
        ]
        if problems:
            raise RelayoutError("\n".join(problems))

    def map_module(self, old: str) -> str:
        """The new dotted name of *old* (a module or package; unchanged if it did not move)."""
        if old in self.modules:
            return self.modules[old]
        for prefix in sorted(self.packages, key=len, reverse=True):
            if old == prefix or old.startswith(prefix + "."):
                return self.packages[prefix] + old[len(prefix) :]
        return old

    def old_paths(self) -> dict[str, str]:
        """New repo-relative path of every moved .py file -> its old path."""
        result: dict[str, str] = {}
        for old, new in self.file_moves:
            if old.endswith(".py"):
                result[new] = old
            else:
                for path in git("ls-files", old).split():
                    result[new + path[len(old) :]] = path
        return result


def dotted(path: str) -> tuple[str, bool]:
    """The dotted module name of a repo-relative .py path, and whether it is a package."""
    parts = path[:-3].split("/")
    if parts[0] == "src":
        parts = parts[1:]
    is_package = parts[-1] == "__init__"
    if is_package:
        parts = parts[:-1]
    return ".".join(parts), is_package


def package_of(path: str) -> str:
    name, is_package = dotted(path)
    return name if is_package else name.rpartition(".")[0]


def resolve(package: str, level: int, module: str | None) -> str:
    base = package.split(".")
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join([*base, *([module] if module else [])])


def relative(from_package: str, target: str) -> tuple[int, str]:
    """(level, module) of a relative import of *target* from inside *from_package*."""
    here, there = from_package.split("."), target.split(".")
    common = 0
    while common < min(len(here), len(there)) and here[common] == there[common]:
        common += 1
    if common == 0:
        raise RelayoutError(f"cannot import {target} relatively from {from_package}")
    return len(here) - common + 1, ".".join(there[common:])


# -- rewriting ------------------------------------------------------------------------------


def text_pattern(plan: Plan) -> tuple[re.Pattern[str], dict[str, str]]:
    """One regex over every old dotted name and path, applied in a single sweep."""
    table: dict[str, str] = {}
    alternatives = []
    for stem, target in MODULES.items():
        if target is None:
            continue
        new_dotted = f"{PACKAGE}.{target.replace('/', '.')}"
        table[f"{PACKAGE}.{stem}"] = new_dotted
        table[f"{stem}.py"] = f"{target}.py"
        alternatives.append(rf"(?<![\w.]){PACKAGE}\.{stem}\b")
        alternatives.append(rf"(?:(?<={PACKAGE}/)|(?<![\w./-])){stem}\.py\b")
    for old, new in TEST_DIRS.items():
        if old != new:
            for sep in "./":
                table[f"tests{sep}{old}"] = f"tests{sep}{new}"
            alternatives.append(rf"(?<![\w.])tests[./]{old}\b(?![\w-])(?!\.py)")
    for old, new in TEST_FILES.items():
        table[f"tests/{old}"] = f"tests/{new}"
        table[f"tests.{old[:-3]}"] = "tests." + new[:-3].replace("/", ".")
        alternatives.append(rf"(?<![\w.])tests/{re.escape(old)}")
        alternatives.append(rf"(?<![\w.])tests\.{old[:-3]}\b")
    return re.compile("|".join(f"(?:{a})" for a in alternatives)), table


def sweep(text: str, pattern: re.Pattern[str], table: dict[str, str], log_names: set[str]) -> str:
    def replace(match: re.Match[str]) -> str:
        found = match.group(0)
        start, end = match.span()
        before, after = text[start - 1 : start], text[end : end + 1]
        if found in log_names and before in "\"'" and before and after == before:
            return found  # a log name, not a module path
        return table[found]

    return pattern.sub(replace, text)


PACKAGE_ATTRIBUTE = re.compile(
    rf"\b({PACKAGE}),(\s*)([\"'])("
    + "|".join(re.escape(stem) for stem, target in MODULES.items() if target)
    + r")\3"
)


def package_attribute(match: re.Match[str]) -> str:
    """``delattr(ocpprpc, "_x")`` (a submodule as an attribute of the package) follows the module."""
    target = MODULES[match.group(4)] or ""
    parent, _, name = target.rpartition("/")
    quote = match.group(3)
    return f"{PACKAGE}.{parent.replace('/', '.')},{match.group(2)}{quote}{name}{quote}"


def noxfile_stems(text: str) -> str:
    """Coverage module lists in noxfile.py name modules by stem: ``"_codec"``."""

    def replace(match: re.Match[str]) -> str:
        target = MODULES.get(match.group(2))
        return match.group(0) if target is None else f"{match.group(1)}{target}{match.group(1)}"

    stems = "|".join(re.escape(stem) for stem in MODULES)
    return re.sub(rf"([\"'])({stems})\1", replace, text)


def byte_col(line: str, col: int | None) -> int:
    """ast column offsets count UTF-8 bytes; turn one into a str index."""
    return len(line.encode()[: col or 0].decode()) if col is not None else len(line.rstrip("\r\n"))


IMPORT_HEAD = re.compile(r"from\s+(\.*\s*[\w.]*)\s+import\s+")


def rewrite_imports(text: str, old_path: str, new_path: str, plan: Plan) -> str:
    """Relative imports and relative module strings, re-aimed from the file's new package."""
    old_package, new_package = package_of(old_path), package_of(new_path)
    tree = ast.parse(text)
    lines = text.splitlines(keepends=True)
    edits: list[tuple[int, int, int, str]] = []  # (line index, start, end, replacement)

    in_fstrings = {
        id(part) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for part in node.values
    }
    for node in ast.walk(tree):
        if id(node) in in_fstrings:
            continue
        if isinstance(node, ast.ImportFrom) and (node.level or node.module == PACKAGE):
            edits.extend(import_edit(node, lines, old_package, new_package, plan))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            spec = re.fullmatch(r"(\.+)([A-Za-z_][\w.]*)", node.value)
            if spec is None or node.lineno != node.end_lineno:
                continue
            old_target = resolve(old_package, len(spec.group(1)), spec.group(2))
            new_target = plan.map_module(old_target)
            if old_target not in plan.known or (new_target == old_target and old_package == new_package):
                continue
            level, module = relative(new_package, new_target)
            line = lines[node.lineno - 1]
            start, end = byte_col(line, node.col_offset), byte_col(line, node.end_col_offset)
            quote = line[start]
            edits.append((node.lineno - 1, start, end, f"{quote}{'.' * level}{module}{quote}"))

    for index, start, end, replacement in sorted(edits, reverse=True):
        lines[index] = lines[index][:start] + replacement + lines[index][end:]
    # Import statements inside strings (code templates such as the generated v16/v201/v21
    # modules' header, docstring examples): the importing module is elsewhere and does not
    # move, so the dots stay and the target gains its part.
    statements = {
        index
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        for index in range(node.lineno - 1, (node.end_lineno or node.lineno))
    }
    for index, line in enumerate(lines):
        if index not in statements and "from ." in line:
            lines[index] = TEMPLATE_IMPORT.sub(template_target, line)
    return "".join(lines)


MOVED = {stem: target for stem, target in MODULES.items() if target is not None}
TEMPLATE_IMPORT = re.compile(
    r"(\bfrom\s+\.+)(" + "|".join(re.escape(stem) for stem in MOVED) + r")\b(?=[\w.]*\s+import\b)"
)


def template_target(match: re.Match[str]) -> str:
    return match.group(1) + MOVED[match.group(2)].replace("/", ".")


def import_edit(
    node: ast.ImportFrom, lines: list[str], old_package: str, new_package: str, plan: Plan
) -> list[tuple[int, int, int, str]]:
    base = resolve(old_package, node.level, node.module) if node.level else PACKAGE
    module_names = [alias for alias in node.names if f"{base}.{alias.name}" in plan.modules]
    line = lines[node.lineno - 1]
    col = byte_col(line, node.col_offset)
    head = IMPORT_HEAD.match(line, col)
    if head is None:
        raise RelayoutError(f"unreadable import at line {node.lineno}: {line.strip()}")

    def spell(target: str) -> str:
        if not node.level:
            return target
        level, module = relative(new_package, target)
        return "." * level + module

    if not module_names:
        new_base = plan.map_module(base)
        if new_base == base and old_package == new_package:
            return []
        start, end = head.span(1)
        return [(node.lineno - 1, start, end, spell(new_base))]
    # ``from . import _x``: the names are modules that moved.
    if len(module_names) != len(node.names) or node.lineno != node.end_lineno:
        raise RelayoutError(f"mixed or multi-line module import at line {node.lineno}: {line.strip()}")
    targets = [plan.modules[f"{base}.{alias.name}"] for alias in node.names]
    parents = {target.rpartition(".")[0] for target in targets}
    if len(parents) != 1:
        raise RelayoutError(f"modules from different parts in one import, line {node.lineno}")
    names = ", ".join(
        f"{target.rpartition('.')[2]} as {alias.asname or alias.name}"
        for alias, target in zip(node.names, targets, strict=True)
    )
    end = byte_col(line, node.end_col_offset)
    statement = f"from {spell(parents.pop())} import {names}"
    return [(node.lineno - 1, col, end, statement)]


FILE_PARENTS = re.compile(r"Path\(__file__\)(\.resolve\(\))?((?:\.parent)+)")


def deepen_file_paths(text: str, delta: int, path: str) -> str:
    """``Path(__file__).parent...`` keeps pointing where it did when the file moves deeper."""
    if delta == 0 or "__file__" not in text:
        return text
    count = text.count("__file__")
    found = FILE_PARENTS.findall(text)
    if len(found) != count:
        raise RelayoutError(f"{path}: a __file__ use other than Path(__file__).parent...: fix by hand")
    if delta < 0:
        raise RelayoutError(f"{path} moves up; __file__ paths need a hand edit")
    deeper = ".parent" * delta
    return FILE_PARENTS.sub(lambda m: f"Path(__file__){m.group(1) or ''}{m.group(2)}{deeper}", text)


def pin_log_names(text: str, old_module: str) -> tuple[str, bool]:
    pinned = re.sub(
        r"getLogger\(__name__\)(.*)$",
        lambda m: (
            f'getLogger("{old_module}"){m.group(1)}' + ("" if "#" in m.group(1) else "  # log name kept")
        ),
        text,
        flags=re.MULTILINE,
    )
    return pinned, pinned != text


# -- the run --------------------------------------------------------------------------------


def move_files(plan: Plan) -> None:
    for old, new in plan.file_moves:
        target = ROOT / new
        if target.exists():
            raise RelayoutError(f"{new} exists already")
        if (ROOT / old).with_suffix("") == target.parent:
            # src/ocpprpc/_station/station.py -> src/ocpprpc/_station/station.py: a folder takes the name
            interim = f"{old}.moving"
            git("mv", old, interim)
            old = interim
        target.parent.mkdir(parents=True, exist_ok=True)
        git("mv", old, new)


def write_packages(plan: Plan) -> list[Path]:
    created = []
    for part, doc in PARTS.items():
        init = SRC / part / "__init__.py"
        init.parent.mkdir(exist_ok=True)
        init.write_text(f'"""{doc}"""\n')
        created.append(init)
    for folder in sorted(plan.new_test_dirs):
        init = ROOT / folder / "__init__.py"
        if not init.exists():
            init.write_text("")
            created.append(init)
    return created


def text_files() -> list[str]:
    tracked = git("ls-files", "-z", *TEXT_ROOTS).split("\0")
    return [
        path
        for path in tracked
        if path
        and Path(path).suffix in TEXT_SUFFIXES
        and not SKIP_PARTS & set(Path(path).parts)
        and (ROOT / path).is_file()
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--allow-dirty", action="store_true", help="run on a tree with local changes")
    args = parser.parse_args(argv)
    try:
        if not args.allow_dirty and git("status", "--porcelain"):
            raise RelayoutError("the working tree has changes: commit or stash them first")
        plan = Plan()
        old_of = plan.old_paths()
        move_files(plan)
        created = write_packages(plan)

        # log names first, so that the sweep can leave them alone everywhere
        log_names: set[str] = set()
        contents: dict[str, str] = {}
        for path in text_files():
            text = (ROOT / path).read_text(encoding="utf-8")
            old_path = old_of.get(path, path)
            if path.endswith(".py") and path.startswith(f"src/{PACKAGE}/") and path != old_path:
                text, pinned = pin_log_names(text, dotted(old_path)[0])
                if pinned:
                    log_names.add(dotted(old_path)[0])
            contents[path] = text

        pattern, table = text_pattern(plan)
        changed: list[Path] = list(created)
        for path, text in contents.items():
            original = (ROOT / path).read_text(encoding="utf-8")
            old_path = old_of.get(path, path)
            text = sweep(text, pattern, table, log_names)
            text = PACKAGE_ATTRIBUTE.sub(package_attribute, text)
            if path == "noxfile.py":
                text = noxfile_stems(text)
            if path.endswith(".py"):
                text = rewrite_imports(text, old_path, path, plan)
                text = deepen_file_paths(text, path.count("/") - old_path.count("/"), path)
            if text != original:
                (ROOT / path).write_text(text, encoding="utf-8")
                changed.append(ROOT / path)

        python = [str(path) for path in changed if path.suffix == ".py"]
        ruff = [shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff") or "ruff"]
        subprocess.run([*ruff, "check", "--fix", "--select", "I", "--force-exclude", "-q", *python], cwd=ROOT)
        subprocess.run([*ruff, "format", "--force-exclude", "-q", *python], cwd=ROOT, check=True)
        git("add", "-A", "src", "tests", *TEXT_ROOTS)
    except RelayoutError as exc:
        print(f"relayout: {exc}", file=sys.stderr)
        return 1
    print(f"relayout: moved {len(plan.file_moves)} files/folders, rewrote {len(changed)} files; staged")
    return 0


if __name__ == "__main__":
    sys.exit(main())
