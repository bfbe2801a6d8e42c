"""Tests of the compiled extension ``reelwatch._core`` on real files."""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import pytest

from corpus import SKIP_REASON, corpus_media_dir
from reelwatch import _core


def _media(name: str) -> Path:
    media = corpus_media_dir()
    if media is None:
        pytest.skip(SKIP_REASON)
    return media / name


class TestProbeMany:
    def test_probe_many_keeps_input_order_and_errors_as_values(
        self, tmp_path: Path
    ) -> None:
        mp4 = _media("flower.mp4")
        webm = _media("flower.webm")
        text = tmp_path / "notes.mkv"
        text.write_text("not a video")
        missing = tmp_path / "missing.mp4"

        results = _core.probe_many([webm, str(missing), mp4, os.fsencode(text)])

        assert [r.path for r in results] == [
            os.fsencode(webm),
            os.fsencode(missing),
            os.fsencode(mp4),
            os.fsencode(text),
        ]
        assert results[0].ok
        assert results[0].container == "webm"
        assert results[0].video_codec == "vp8"
        assert results[1].ok is False
        assert results[1].error_kind == "not_found"
        assert results[2].video_codec == "h264"
        assert results[2].audio_codec == "aac"
        assert results[2].frame_rate == (30000, 1001)
        assert results[2].duration_s == pytest.approx(5.055)
        assert results[3].error_kind == "unsupported"
        assert "text" in (results[3].error or "")

    def test_probe_reads_only_headers(self) -> None:
        path = _media("flower.mp4")

        (result,) = _core.probe_many([path])

        assert result.ok
        assert result.size == path.stat().st_size
        assert 0 < result.bytes_read < 64 * 1024

    def test_probe_non_utf8_name_round_trips(self, tmp_path: Path) -> None:
        source = _media("flower.webm")
        name = b"caf\xe9-\xff.webm"
        target = os.path.join(os.fsencode(tmp_path), name)
        shutil.copyfile(source, target)

        (result,) = _core.probe_many([target])

        assert result.path == target
        assert result.ok, result.error
        assert result.width == 960

    def test_probe_special_files_are_errors(self, tmp_path: Path) -> None:
        empty = tmp_path / "empty.mp4"
        empty.touch()
        fifo = tmp_path / "pipe.mkv"
        os.mkfifo(fifo)

        results = _core.probe_many([empty, fifo, tmp_path])

        assert [r.error_kind for r in results] == ["empty", "not_a_file", "not_a_file"]
        assert "FIFO" in (results[1].error or "")
        assert all(r.ok is False for r in results)

    def test_probe_rejects_symlink_escaping_roots(self, tmp_path: Path) -> None:
        root = tmp_path / "tv"
        outside = tmp_path / "tv-old"
        root.mkdir()
        outside.mkdir()
        shutil.copyfile(_media("flower.mp4"), outside / "flower.mp4")
        (root / "link.mp4").symlink_to(outside / "flower.mp4")
        shutil.copyfile(_media("flower.mp4"), root / "inside.mp4")
        (root / "inner-link.mp4").symlink_to(root / "inside.mp4")

        escaped, inside, linked = _core.probe_many(
            [root / "link.mp4", root / "inside.mp4", root / "inner-link.mp4"],
            roots=[root],
        )

        assert escaped.error_kind == "outside_roots"
        assert escaped.bytes_read == 0
        assert inside.ok
        assert linked.ok

    def test_probe_truncated_moov_at_end_is_incomplete(self, tmp_path: Path) -> None:
        data = _media("edit-list-discard.mp4").read_bytes()
        moov = data.index(b"moov") - 4
        cut = tmp_path / "cut.mp4"
        cut.write_bytes(data[: moov + 20])

        (result,) = _core.probe_many([cut])

        assert result.error_kind == "incomplete"

    def test_probe_many_releases_the_gil(self) -> None:
        """A probe on another thread must not stop this thread from running."""
        paths = [_media("flower.mp4")] * 2000
        started = threading.Event()
        done = threading.Event()

        def work() -> None:
            started.set()
            _core.probe_many(paths, threads=1)
            done.set()

        worker = threading.Thread(target=work)
        worker.start()
        started.wait()
        ticks = 0
        while not done.is_set():
            ticks += 1
        worker.join()

        # With the GIL held for the whole batch this loop could not run
        # until the batch ended.
        assert ticks > 100

    def test_probe_many_rejects_a_bare_string(self) -> None:
        with pytest.raises(TypeError, match="wrap it in a list"):
            _core.probe_many("flower.mp4")

    def test_probe_many_rejects_non_paths(self) -> None:
        with pytest.raises(TypeError, match="got int"):
            _core.probe_many([42])  # type: ignore[list-item]


class TestWalk:
    def test_walk_lists_files_and_skips_ignored(self, tmp_path: Path) -> None:
        (tmp_path / "shows").mkdir()
        (tmp_path / "shows" / "a.MKV").write_bytes(b"x")
        (tmp_path / "shows" / "b.mp4").write_bytes(b"xy")
        (tmp_path / "shows" / "c.txt").write_bytes(b"x")
        (tmp_path / ".trash").mkdir()
        (tmp_path / ".trash" / "d.mkv").write_bytes(b"x")

        result = _core.walk(tmp_path, extensions=["mkv", ".mp4"], ignore=[".trash"])

        names = [os.path.basename(row[0]) for row in result.files]
        assert names == [b"a.MKV", b"b.mp4"]
        path, size, mtime_ns, ctime_ns, inode, device = result.files[1]
        stat = os.stat(path)
        assert (size, mtime_ns, inode, device) == (
            2,
            stat.st_mtime_ns,
            stat.st_ino,
            stat.st_dev,
        )
        assert ctime_ns == stat.st_ctime_ns
        assert result.dirs == 2
        assert result.errors == []

    def test_walk_reports_escaping_symlink(self, tmp_path: Path) -> None:
        root = tmp_path / "tv"
        outside = tmp_path / "tv-old"
        root.mkdir()
        outside.mkdir()
        (outside / "secret.mkv").write_bytes(b"x")
        (root / "escape").symlink_to(outside)

        result = _core.walk(root, extensions=["mkv"], allowed_roots=[root])

        assert result.files == []
        assert [(os.path.basename(p), kind) for p, kind, _ in result.errors] == [
            (b"escape", "outside_roots")
        ]

    def test_walk_reports_unreadable_directory(self, tmp_path: Path) -> None:
        if os.geteuid() == 0:
            pytest.skip("root reads directories without read permission")
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0)
        try:
            result = _core.walk(tmp_path, extensions=["mkv"])
        finally:
            locked.chmod(0o755)
        assert [kind for _, kind, _ in result.errors] == ["permission_denied"]

    def test_walk_invalid_glob_is_value_error(self, tmp_path: Path) -> None:
        with pytest.raises(ValueError, match="invalid ignore pattern"):
            _core.walk(tmp_path, extensions=["mkv"], ignore=["a["])


class TestFingerprint:
    def test_fingerprint_identifies_copies(self, tmp_path: Path) -> None:
        source = _media("flower.mp4")
        copy = tmp_path / "moved.mp4"
        shutil.copyfile(source, copy)

        (first, error1), (second, error2), (missing, error3) = _core.fingerprint(
            [source, copy, tmp_path / "gone.mp4"]
        )

        assert error1 is None and error2 is None
        assert first is not None and len(first) == 16
        assert first == second
        assert missing is None
        assert error3 is not None and error3.startswith("not_found")


class TestCheckPaths:
    def test_check_paths_compares_components(self, tmp_path: Path) -> None:
        root = tmp_path / "tv"
        root.mkdir()
        (tmp_path / "tv-old").mkdir()
        real_root = os.fsencode(root.resolve())

        inside, sibling, nul, missing = _core.check_paths(
            [
                root / "a.mkv",
                tmp_path / "tv-old" / "a.mkv",
                b"/tv/\x00x",
                root / "new" / "b.mkv",
            ],
            [root],
        )

        assert inside == (real_root + b"/a.mkv", None, None)
        assert sibling[1] == "outside_roots"
        assert nul[:2] == (None, "invalid_path")
        assert "NUL" in (nul[2] or "")
        assert missing == (real_root + b"/new/b.mkv", None, None)


def test_version_is_the_crate_version() -> None:
    assert _core.__version__ == "0.1.0"
