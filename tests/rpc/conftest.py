"""Session tests: a fixture capturing the ``ocpprpc.session`` logger."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from .helpers import Records


@pytest.fixture
def session_log() -> Iterator[Records]:
    logger = logging.getLogger("ocpprpc.session")
    records = Records()
    old_level = logger.level
    logger.addHandler(records)
    logger.setLevel(logging.DEBUG)
    try:
        yield records
    finally:
        logger.removeHandler(records)
        logger.setLevel(old_level)
