"""Every runnable example in docs/ runs and does what it says."""

from __future__ import annotations

import runpy
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).parent.parent / "docs" / "examples").glob("*.py"))


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 2


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_runs_as_a_script(path: Path) -> None:
    out = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip(), "an example shows what it did"


def test_unit_testing_example_tests_pass_and_can_fail() -> None:
    module = runpy.run_path(str(Path(__file__).parent.parent / "docs" / "examples" / "unit_testing.py"))
    tests = [fn for name, fn in module.items() if name.startswith("test_")]
    assert len(tests) == 4
    for test in tests:
        test()
    # The example's tests are real: break the handler and one of them fails.
    module["HANDLERS"]["BootNotification"] = lambda payload: {"status": "Accepted"}
    with pytest.raises(AssertionError):
        module["test_rejects_blocked_vendors"]()


def test_readme_python_snippets_run() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    snippets = [block.split("```", 1)[0] for block in readme.split("```python\n")[1:]]
    assert snippets, "the README shows the engine in Python"
    for snippet in snippets:
        exec(compile(snippet, "README.md", "exec"), {})
