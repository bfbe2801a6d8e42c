"""Daemon-level tests: a real SQLite file, a real folder, real watching.

The parametrized tests run with the fake core and, when it is built, with the
Rust core on a file from the media corpus.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import socket
import stat
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest

from conftest import MakeConfig
from corpus import corpus_media_dir
from fake_core import FakeCore, write_fake_video
from reelwatch.config import Config
from reelwatch.core import Core, CoreUnavailableError, load_core
from reelwatch.daemon import Daemon
from reelwatch.errors import InvalidParamsError, NotFoundError, PathNotAllowedError
from reelwatch.models import JobState, RootState, Video
from reelwatch.repository import SQLiteRepository

pytestmark = pytest.mark.anyio


def rust_core_or_skip() -> Core:
    try:
        return load_core()
    except CoreUnavailableError as exc:
        pytest.skip(f"the Rust core is not built: {exc}")


@pytest.fixture(params=["fake", "rust"])
def core(request: pytest.FixtureRequest, fake_core: FakeCore) -> Core:
    return fake_core if request.param == "fake" else rust_core_or_skip()


def add_video(core: Core, path: Path) -> None:
    """Put a video at ``path`` that ``core`` can probe."""
    if isinstance(core, FakeCore):
        write_fake_video(path, duration_s=5.0, video_codec="h264")
        return
    media = corpus_media_dir()
    if media is None:
        pytest.skip("media corpus not found: set REELWATCH_CORPUS")
    shutil.copyfile(media / "flower.mp4", path)


@contextlib.asynccontextmanager
async def running(daemon: Daemon) -> AsyncIterator[Daemon]:
    async with anyio.create_task_group() as task_group:
        await task_group.start(daemon.run)
        with anyio.fail_after(30):
            yield daemon
        task_group.cancel_scope.cancel()


async def eventually(check: Callable[[], Awaitable[bool]]) -> None:
    """Wait until ``check()`` is true; the daemon has no event for outside callers."""
    for _ in itertools.count():
        if await check():
            return
        await anyio.sleep(0.05)


async def wait_idle(daemon: Daemon) -> None:
    async def is_idle() -> bool:
        return (await daemon.status()).idle

    await eventually(is_idle)


async def catalog(daemon: Daemon) -> dict[str, Video]:
    page = await daemon.list_videos(under=None, limit=1000, cursor=None)
    return {video.path: video for video in page.videos}


def make_daemon(config: Config, core: Core) -> Daemon:
    return Daemon(config, core=core, serve_control_socket=False)


async def test_file_added_then_deleted_appears_then_disappears(
    config: Config, library: Path, core: Core
) -> None:
    """1. start on an empty root; 2. add a video; 3. it appears with its
    metadata; 4. delete it; 5. it disappears; 6. the jobs completed."""
    daemon = make_daemon(config, core)
    path = library / "clip.mp4"

    async with running(daemon):
        await wait_idle(daemon)
        add_video(core, path)

        async def appeared() -> bool:
            return str(path) in await catalog(daemon)

        await eventually(appeared)
        await wait_idle(daemon)
        video = (await catalog(daemon))[str(path)]
        path.unlink()

        async def disappeared() -> bool:
            return str(path) not in await catalog(daemon)

        await eventually(disappeared)
        await wait_idle(daemon)
        status = await daemon.status()
        jobs = await daemon.list_jobs(status=None, limit=100)

    assert video.error is None
    assert video.video_codec == "h264"
    assert video.duration_s == pytest.approx(5.0, abs=0.1)
    assert video.size > 0
    assert status.videos == 0
    assert status.jobs["failed"] == 0
    assert status.jobs["complete"] >= 3
    assert {job.status for job in jobs} == {JobState.COMPLETE}
    assert status.roots[0].state == RootState.WATCHING


async def test_startup_scan_catalogs_existing_files(
    config: Config, library: Path, fake_core: FakeCore
) -> None:
    write_fake_video(library / "a.mp4")
    write_fake_video(library / "show" / "b.mkv")
    (library / "broken.avi").write_text("not a video")
    daemon = make_daemon(config, fake_core)

    async with running(daemon):
        await wait_idle(daemon)
        videos = await catalog(daemon)
        status = await daemon.status()
        [startup_job] = await daemon.list_jobs(status=None, limit=10)

    assert sorted(videos) == [
        str(library / "a.mp4"),
        str(library / "broken.avi"),
        str(library / "show" / "b.mkv"),
    ]
    assert videos[str(library / "broken.avi")].error_kind == "unsupported"
    assert status.videos == 3
    assert status.idle is True
    assert startup_job.path == str(library)
    assert startup_job.status == JobState.COMPLETE
    assert startup_job.result is not None
    assert startup_job.result["new"] == 3
    assert startup_job.result["error_count"] == 1


async def test_restart_on_unchanged_library_probes_nothing(
    config: Config, library: Path, fake_core: FakeCore
) -> None:
    write_fake_video(library / "a.mp4")
    async with running(make_daemon(config, fake_core)) as first:
        await wait_idle(first)
        before = await catalog(first)
    fake_core.probed.clear()

    async with running(make_daemon(config, fake_core)) as second:
        await wait_idle(second)
        after = await catalog(second)

    assert fake_core.probed_paths == []
    assert after[str(library / "a.mp4")].id == before[str(library / "a.mp4")].id


async def test_missing_root_is_reported_and_others_work(
    make_config: MakeConfig, library: Path, tmp_path: Path, fake_core: FakeCore
) -> None:
    missing = tmp_path / "unplugged"
    config = make_config(roots=[library, missing])
    write_fake_video(library / "a.mp4")
    daemon = make_daemon(config, fake_core)

    async with running(daemon):
        await wait_idle(daemon)
        status = await daemon.status()

    states = {root.path: root.state for root in status.roots}
    assert states == {str(library): RootState.WATCHING, str(missing): "missing"}
    assert status.videos == 1


async def test_scan_request_paths(
    config: Config, library: Path, tmp_path: Path, fake_core: FakeCore
) -> None:
    (tmp_path / "library-old").mkdir()
    write_fake_video(library / "a.mp4")
    daemon = make_daemon(config, fake_core)

    async with running(daemon):
        await wait_idle(daemon)
        job = await daemon.scan(str(library / "a.mp4"))
        await wait_idle(daemon)
        finished = await daemon.get_job(job.id)
        with pytest.raises(PathNotAllowedError, match="library-old' is not inside"):
            await daemon.scan(str(tmp_path / "library-old"))
        with pytest.raises(PathNotAllowedError, match="'/etc' is not inside"):
            await daemon.scan("/etc")
        with pytest.raises(InvalidParamsError, match="is not an absolute path"):
            await daemon.scan("relative/path")
        with pytest.raises(NotFoundError, match="job 9999 not found"):
            await daemon.get_job(9999)
        with pytest.raises(PathNotAllowedError, match="under '/etc'"):
            await daemon.list_videos(under="/etc", limit=10, cursor=None)

    assert job.priority > 0
    assert finished.status == JobState.COMPLETE
    assert finished.path == str(library / "a.mp4")
    assert finished.result is not None
    assert finished.result["skipped"] == 1


async def test_list_videos_pages_under_a_folder(
    config: Config, library: Path, fake_core: FakeCore
) -> None:
    for index in range(5):
        write_fake_video(library / "tv" / f"{index}.mkv")
    write_fake_video(library / "tv-old" / "x.mkv")
    daemon = make_daemon(config, fake_core)

    async with running(daemon):
        await wait_idle(daemon)
        first = await daemon.list_videos(
            under=str(library / "tv"), limit=3, cursor=None
        )
        second = await daemon.list_videos(
            under=str(library / "tv"), limit=3, cursor=first.next_cursor
        )

    assert [Path(v.path).name for v in first.videos] == ["0.mkv", "1.mkv", "2.mkv"]
    assert [Path(v.path).name for v in second.videos] == ["3.mkv", "4.mkv"]
    assert second.next_cursor is None


async def test_jobs_survive_in_sqlite(
    config: Config, library: Path, fake_core: FakeCore
) -> None:
    write_fake_video(library / "a.mp4")
    daemon = make_daemon(config, fake_core)
    async with running(daemon):
        await wait_idle(daemon)

    repository = SQLiteRepository(config.database_path)
    await repository.open()
    jobs = await repository.list_jobs(status=None, limit=10)
    await repository.close()

    assert [(job.path, job.status) for job in jobs] == [
        (str(library), JobState.COMPLETE)
    ]


async def test_control_socket_answers_status(
    make_config: MakeConfig, library: Path, fake_core: FakeCore
) -> None:
    with tempfile.TemporaryDirectory(prefix="rw-") as socket_dir:
        # A short folder: pytest's tmp_path can exceed the 108 bytes a Unix
        # socket address allows.
        config = msgspec.structs.replace(
            make_config(), socket_path=str(Path(socket_dir) / "rw.sock")
        )
        daemon = Daemon(config, core=fake_core)

        async with running(daemon):
            mode = stat.S_IMODE(os.stat(config.socket_path).st_mode)
            reply = await anyio.to_thread.run_sync(request_status, config.socket_path)

    assert mode == 0o600
    assert reply["id"] == 1
    assert reply["result"]["roots"] == [
        {"path": str(library), "state": "watching", "error": None}
    ]


def request_status(path: str) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(10)
        client.connect(path)
        client.sendall(b'{"jsonrpc": "2.0", "id": 1, "method": "status"}\n')
        data = b""
        while not data.endswith(b"\n"):
            data += client.recv(65536)
    reply: dict[str, Any] = json.loads(data)
    return reply
