"""Fixtures for the tests of `make run` (devstack.testing.DevStack drives it)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from devstack.testing import DevStack


@pytest.fixture
def devstack_folder() -> Iterator[Path]:
    # Not tmp_path: the embedded Redis's unix socket path must stay under ~100 characters.
    folder = Path(tempfile.mkdtemp(prefix="devstack-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
async def make_run(database_url: str, devstack_folder: Path) -> AsyncIterator[DevStack]:
    stack = DevStack(devstack_folder, database_url)
    try:
        yield stack
    finally:
        stack.kill_leftovers()
