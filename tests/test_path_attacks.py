"""Path attacks over the control socket: escapes, bad syntax, and a symlink race.

Every test runs the real daemon process on a root ``tv`` next to a sibling
folder ``tv-old`` that shares its name as a prefix and holds the "secret"
outside file. The outside file is a different clip from the one inside, with
its own size and duration, so any catalog entry that carries either value
proves that the daemon read outside its root.
"""

from __future__ import annotations

import os
import random
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from corpus import SKIP_REASON, corpus_media_dir
from daemon_process import DaemonProcess, RpcFailure, running_daemon

PATH_NOT_ALLOWED = -32001
INVALID_PARAMS = -32602

INSIDE_CLIP = "edit-list-discard.mp4"
INSIDE_DURATION_S = 2.0
OUTSIDE_CLIP = "big_buck_bunny_metadata.m4v"
OUTSIDE_DURATION_S = 1.003


class Tree:
    """A root with one clip inside and a secret clip in a sibling folder."""

    def __init__(self, base: Path, media: Path) -> None:
        self.root = base / "tv"
        self.outside = base / "tv-old"
        self.root.mkdir()
        self.outside.mkdir()
        self.inside_clip = self.root / "inside.mp4"
        self.secret = self.outside / "secret.mp4"
        shutil.copyfile(media / INSIDE_CLIP, self.inside_clip)
        shutil.copyfile(media / OUTSIDE_CLIP, self.secret)
        self.secret_size = self.secret.stat().st_size
        assert self.secret_size != self.inside_clip.stat().st_size


@pytest.fixture
def tree(tmp_path: Path) -> Tree:
    media = corpus_media_dir()
    if media is None:
        pytest.skip(SKIP_REASON)
    return Tree(tmp_path.resolve(), media)


@pytest.fixture
def daemon(tmp_path: Path, tree: Tree) -> Iterator[DaemonProcess]:
    with running_daemon(
        tmp_path / "run", [tree.root], extra_config="[scan]\nsettle_s = 0\n"
    ) as process:
        process.wait_idle()
        yield process


def scan_error(daemon: DaemonProcess, path: str) -> RpcFailure:
    with pytest.raises(RpcFailure) as caught:
        daemon.call("scan", {"path": path})
    return caught.value


def assert_no_secret(tree: Tree, videos: list[dict[str, Any]]) -> None:
    for video in videos:
        assert video["size"] != tree.secret_size, video
        assert video["duration_s"] != pytest.approx(OUTSIDE_DURATION_S), video
        assert not video["path"].startswith(str(tree.outside)), video


def test_dotdot_escape_rejected(daemon: DaemonProcess, tree: Tree) -> None:
    """A path that climbs out of the root with ``..`` gets -32001 naming it."""
    path = f"{tree.root}/../tv-old/secret.mp4"

    error = scan_error(daemon, path)

    assert error.code == PATH_NOT_ALLOWED
    assert path in error.error["message"]


def test_sibling_prefix_root_rejected(daemon: DaemonProcess, tree: Tree) -> None:
    """``/x/tv-old`` is not under the root ``/x/tv`` although it shares a prefix."""
    for path in (str(tree.outside), str(tree.secret)):
        error = scan_error(daemon, path)

        assert error.code == PATH_NOT_ALLOWED
        assert path in error.error["message"]


def test_symlink_escape_rejected(daemon: DaemonProcess, tree: Tree) -> None:
    """Symlinks inside the root that lead out, to a file or a folder, are rejected."""
    file_link = tree.root / "link.mp4"
    dir_link = tree.root / "linked-folder"
    file_link.symlink_to(tree.secret)
    dir_link.symlink_to(tree.outside, target_is_directory=True)

    for path in (str(file_link), str(dir_link), f"{dir_link}/secret.mp4"):
        error = scan_error(daemon, path)

        assert error.code == PATH_NOT_ALLOWED, path
        assert path in error.error["message"]


def test_symlinks_out_not_cataloged(daemon: DaemonProcess, tree: Tree) -> None:
    """A full scan skips the links that lead out and lists them as errors."""
    (tree.root / "link.mp4").symlink_to(tree.secret)
    (tree.root / "linked-folder").symlink_to(tree.outside, target_is_directory=True)

    job = daemon.call("scan", {"path": str(tree.root)})
    daemon.wait_idle()
    finished = daemon.call("job.get", {"job_id": job["job_id"]})
    videos = daemon.videos()

    assert [Path(v["path"]).name for v in videos] == ["inside.mp4"]
    assert_no_secret(tree, videos)
    kinds = {Path(e["path"]).name: e["kind"] for e in finished["result"]["errors"]}
    assert kinds == {"link.mp4": "outside_roots", "linked-folder": "outside_roots"}


def test_videos_list_under_escape_rejected(daemon: DaemonProcess, tree: Tree) -> None:
    """``videos.list`` checks ``under`` like ``scan`` checks ``path``."""
    for under in (f"{tree.root}/..", str(tree.outside), "/"):
        with pytest.raises(RpcFailure) as caught:
            daemon.call("videos.list", {"under": under})

        assert caught.value.code == PATH_NOT_ALLOWED, under


@pytest.mark.parametrize(
    ("label", "suffix", "message_part"),
    [
        ("nul byte", "/a\u0000b.mp4", "NUL"),
        ("long component", "/" + "a" * 256 + ".mp4", "NAME_MAX"),
        ("long path", ("/" + "b" * 200) * 21, "PATH_MAX"),
    ],
)
def test_malformed_path_rejected(
    daemon: DaemonProcess, tree: Tree, label: str, suffix: str, message_part: str
) -> None:
    """NUL bytes and paths past PATH_MAX or NAME_MAX get -32602, not a crash."""
    path = str(tree.root) + suffix

    error = scan_error(daemon, path)

    assert error.code == INVALID_PARAMS, label
    assert message_part in error.error["message"], label
    assert repr(path)[:60] in error.error["message"], label
    assert daemon.call("ping") == "pong"


def test_relative_path_rejected(daemon: DaemonProcess) -> None:
    """A relative path cannot be checked against the roots, so it is invalid."""
    error = scan_error(daemon, "tv/inside.mp4")

    assert error.code == INVALID_PARAMS
    assert "'tv/inside.mp4'" in error.error["message"]


def test_core_refuses_symlink_out(tree: Tree) -> None:
    """With ``roots``, the core opens without following a link out of them."""
    core = pytest.importorskip("reelwatch._core", reason="the Rust core is not built")
    link = tree.root / "link.mp4"
    link.symlink_to(tree.secret)

    [result] = core.probe_many([str(link)], roots=[str(tree.root)])

    assert result.ok is False
    assert result.error_kind == "outside_roots"
    assert result.bytes_read == 0
    assert result.duration_s is None


def test_symlink_swap_race_reads_nothing_outside(
    daemon: DaemonProcess, tree: Tree
) -> None:
    """A file swapped for a symlink to the secret while scans run leaks nothing.

    1. a thread replaces ``race.mp4`` again and again, atomically by rename,
       with a hard link of the inside clip or a symlink to the secret;
    2. the test asks for scans of the file and the root meanwhile and reads
       the catalog after each;
    3. no entry ever has the secret's size or duration.
    """
    target = tree.root / "race.mp4"
    stage = tree.root / ".stage"  # ignored by the default ".*" glob
    stage.mkdir()
    stop = threading.Event()
    swaps = 0

    def swap() -> None:
        nonlocal swaps
        pause = random.Random(7)
        while not stop.is_set():
            os.symlink(tree.secret, stage / "link")
            os.rename(stage / "link", target)
            # Both states last about as long as one stat-probe-stat cycle.
            time.sleep(pause.uniform(0, 0.002))
            os.link(tree.inside_clip, stage / "file")
            os.rename(stage / "file", target)
            time.sleep(pause.uniform(0, 0.002))
            swaps += 1

    swapper = threading.Thread(target=swap)
    swapper.start()
    try:
        for round_number in range(150):
            path = target if round_number % 3 else tree.root
            try:
                daemon.call("scan", {"path": str(path)})
            except RpcFailure as exc:
                # The check saw the symlink: rejecting it is also correct.
                assert exc.code == PATH_NOT_ALLOWED
            assert_no_secret(tree, daemon.videos())
    finally:
        stop.set()
        swapper.join()

    daemon.wait_idle()
    videos = daemon.videos()
    assert swaps > 100
    assert_no_secret(tree, videos)
    race = [v for v in videos if v["path"] == str(target)]
    for video in race:
        assert video["duration_s"] in (None, pytest.approx(INSIDE_DURATION_S))
