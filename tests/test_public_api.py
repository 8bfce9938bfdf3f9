"""API hygiene: everything exported exists, is documented, and comes from one place."""

from __future__ import annotations

import ocpprpc


def test_all_names_exist_and_are_unique() -> None:
    assert len(set(ocpprpc.__all__)) == len(ocpprpc.__all__)
    for name in ocpprpc.__all__:
        assert hasattr(ocpprpc, name), name


def test_public_classes_and_functions_have_docstrings() -> None:
    for name in ocpprpc.__all__:
        obj = getattr(ocpprpc, name)
        if callable(obj):
            assert obj.__doc__, f"{name} has no docstring"


def test_version_is_a_string() -> None:
    assert isinstance(ocpprpc.__version__, str) and ocpprpc.__version__
