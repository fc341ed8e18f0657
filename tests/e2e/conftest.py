"""Fixtures for palisade's end-to-end tests. They build nothing: they start real processes.

The gateway binary comes from PALISADE_BIN (set by scripts/test). A missing tool
or package is a usage error that stops the run, never a skipped test.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from support import CONFORMANCE_BIN, EVERYTHING_JS, FILESYSTEM_JS, TS_CLIENT, Launcher


def pytest_configure(config: pytest.Config) -> None:
    problems = []
    binary = os.environ.get("PALISADE_BIN")
    if not binary:
        problems.append("PALISADE_BIN is not set (scripts/test sets it after `cargo build -p palisade`)")
    elif not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
        problems.append(f"PALISADE_BIN=`{binary}` is not an executable file")
    if shutil.which("node") is None:
        problems.append("`node` is not on PATH")
    for needed in (EVERYTHING_JS, FILESYSTEM_JS, CONFORMANCE_BIN, TS_CLIENT):
        if not needed.exists():
            problems.append(f"`{needed}` is missing (run `npm ci` in tests/e2e, or scripts/test)")
    if problems:
        raise pytest.UsageError("end-to-end tests cannot run:\n  " + "\n  ".join(problems))


@pytest.fixture
def launcher(tmp_path) -> Iterator[Launcher]:
    """Starts processes for one test and stops them all when it ends."""
    launched = Launcher(tmp_path)
    try:
        yield launched
    finally:
        launched.close()


@pytest.fixture(scope="module")
def module_launcher(tmp_path_factory) -> Iterator[Launcher]:
    """Like `launcher`, for processes shared by the tests of one module."""
    launched = Launcher(tmp_path_factory.mktemp("module"))
    try:
        yield launched
    finally:
        launched.close()
