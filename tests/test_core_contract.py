"""Behaviour that the Rust core and the fake core in tests share, on real files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fake_core import FakeCore
from reelwatch.core import Core, CoreUnavailableError, KnownFiles, load_core

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["fake", "rust"])
def core(request: pytest.FixtureRequest) -> Core:
    if request.param == "fake":
        return FakeCore()
    try:
        return load_core()
    except CoreUnavailableError as exc:
        pytest.skip(f"the Rust core is not built: {exc}")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    # The walk lists paths under the real path of its root.
    return tmp_path.resolve()


def stat_row(path: Path) -> tuple[bytes, int, int, int, int, int, int, None, None]:
    info = os.stat(path)
    return (
        os.fsencode(path),
        info.st_size,
        info.st_mtime_ns,
        info.st_ctime_ns,
        info.st_ino,
        info.st_dev,
        1,
        None,
        None,
    )


async def test_walk_compared_returns_only_differences(core: Core, root: Path) -> None:
    (root / "shows").mkdir()
    (root / ".trash").mkdir()
    same = root / "shows" / "same.mkv"
    grown = root / "shows" / "grown.mkv"
    stale = root / "stale.mkv"
    new = root / "new.mkv"
    for path in (same, grown, stale, new, root / ".trash" / "old.mkv"):
        path.write_bytes(b"x")
    grown_row = stat_row(grown)
    grown.write_bytes(b"xyz")
    gone = (os.fsencode(root / "gone.mkv"), 1, 2, 3, 4, 5, 1, None, None)
    rows = [gone, stat_row(same), grown_row, stat_row(stale)]
    known = KnownFiles(rows, stale={3})

    async def read() -> KnownFiles:
        return known

    comparison = await core.walk_compared(
        str(root),
        extensions={"mkv"},
        ignore=[".trash"],
        allowed_roots=[str(root)],
        read_known=read,
    )

    changed = sorted(entry.path for entry in comparison.changed)
    assert changed == sorted([str(new), str(grown), str(stale)])
    grown_entry = next(e for e in comparison.changed if e.path == str(grown))
    assert grown_entry.size == 3
    assert comparison.unchanged == 1
    assert comparison.missing == [0]
    assert comparison.errors == []
    assert comparison.dirs == 2


async def test_walk_compared_unchanged_tree(core: Core, root: Path) -> None:
    paths = [root / f"clip{index}.mkv" for index in range(5)]
    for path in paths:
        path.write_bytes(b"clip")
    known = KnownFiles([stat_row(path) for path in paths])

    async def read() -> KnownFiles:
        return known

    comparison = await core.walk_compared(
        str(root),
        extensions={"mkv"},
        ignore=[],
        allowed_roots=[str(root)],
        read_known=read,
    )

    assert comparison.changed == []
    assert comparison.unchanged == 5
    assert comparison.missing == []


async def test_walk_compared_read_error(core: Core, tmp_path: Path) -> None:
    async def read() -> KnownFiles:
        raise OSError("the catalog is unreadable")

    with pytest.raises(OSError, match="the catalog is unreadable"):
        await core.walk_compared(
            str(tmp_path),
            extensions={"mkv"},
            ignore=[],
            allowed_roots=[str(tmp_path)],
            read_known=read,
        )


async def test_walk_compared_bad_stale_index(core: Core, tmp_path: Path) -> None:
    async def read() -> KnownFiles:
        return KnownFiles([], stale={2})

    with pytest.raises(ValueError, match="out of range"):
        await core.walk_compared(
            str(tmp_path),
            extensions={"mkv"},
            ignore=[],
            allowed_roots=[str(tmp_path)],
            read_known=read,
        )
