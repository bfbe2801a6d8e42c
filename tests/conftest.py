"""Fixtures shared by the daemon's tests.

* ``anyio_backend``: asyncio.
* ``library``: an empty scan root (a real temporary folder).
* ``make_config``: builds a :class:`Config` watching ``library``, with state in
  a temporary folder; keyword arguments override ``[scan]`` settings.
* ``config``: ``make_config()`` with ``settle_s = 0``.
* ``fake_core``: a :class:`fake_core.FakeCore` on real files.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fake_core import FakeCore
from reelwatch.config import Config, ScanConfig

MakeConfig = Callable[..., Config]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def library(tmp_path: Path) -> Path:
    root = tmp_path / "library"
    root.mkdir()
    return root.resolve()


@pytest.fixture
def make_config(tmp_path: Path, library: Path) -> MakeConfig:
    def make(*, roots: list[Path] | None = None, **scan: Any) -> Config:
        state_dir = tmp_path / "state"
        return Config(
            allowed_scan_roots=tuple(str(root) for root in (roots or [library])),
            state_dir=str(state_dir),
            socket_path=str(state_dir / "reelwatch.sock"),
            scan=ScanConfig(**{"settle_s": 0.0, **scan}),
        )

    return make


@pytest.fixture
def config(make_config: MakeConfig) -> Config:
    return make_config()


@pytest.fixture
def fake_core() -> FakeCore:
    return FakeCore()
