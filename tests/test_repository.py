"""The repository contract, run against SQLite and the in-memory store."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from reelwatch.errors import InvalidParamsError, StorageError
from reelwatch.models import Job, JobState, Progress, Video
from reelwatch.repository import (
    _MIGRATIONS,
    SCHEMA_VERSION,
    MemoryRepository,
    Repository,
    SQLiteRepository,
    encode_cursor,
    is_same_or_under,
    state_of_row,
)

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["sqlite", "memory"])
async def repository(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Repository]:
    repo: Repository
    if request.param == "sqlite":
        repo = SQLiteRepository(str(tmp_path / "state" / "reelwatch.db"))
    else:
        repo = MemoryRepository()
    await repo.open()
    yield repo
    await repo.close()


def video(path: str, **fields: object) -> Video:
    values: dict[str, object] = {
        "id": 0,
        "path": path,
        "root": "/media",
        "size": 100,
        "mtime_ns": 1,
        "ctime_ns": 2,
        "inode": 3,
        "device": 4,
    }
    values.update(fields)
    return msgspec.convert(values, Video)


def job(path: str = "/media", **fields: object) -> Job:
    values: dict[str, object] = {
        "id": 0,
        "kind": "scan",
        "path": path,
        "status": "pending",
        "created_at": 1000.0,
    }
    values.update(fields)
    return msgspec.convert(values, Job)


class TestVideos:
    async def test_upsert_then_get_keeps_every_field(
        self, repository: Repository
    ) -> None:
        written = video(
            "/media/a.mkv",
            container="matroska",
            duration_s=61.5,
            width=1280,
            height=720,
            frame_rate="24000/1001",
            video_codec="hevc",
            audio_codec="opus",
            rotation=90,
            video_profile="Main",
            audio_channels=2,
            audio_sample_rate=48000,
            bit_rate=800000,
            complete=True,
            inode=2**64 - 5,
            device=2**63,
            probed_at=5.0,
        )
        await repository.upsert_videos([written])

        stored = await repository.get_video("/media/a.mkv")

        assert stored is not None
        assert stored.id > 0
        assert msgspec.structs.replace(stored, id=0) == written

    async def test_upsert_keeps_id_of_existing_entry(
        self, repository: Repository
    ) -> None:
        await repository.upsert_videos([video("/media/a.mp4"), video("/media/b.mp4")])
        first = await repository.get_video("/media/a.mp4")

        await repository.upsert_videos([video("/media/a.mp4", size=999)])
        second = await repository.get_video("/media/a.mp4")

        assert first is not None and second is not None
        assert second.id == first.id
        assert second.size == 999
        assert await repository.count_videos() == 2

    async def test_deleted_id_is_not_reused(self, repository: Repository) -> None:
        await repository.upsert_videos([video("/media/a.mp4")])
        old = await repository.get_video("/media/a.mp4")
        await repository.delete_videos(["/media/a.mp4"])

        await repository.upsert_videos([video("/media/a.mp4")])
        new = await repository.get_video("/media/a.mp4")

        assert old is not None and new is not None
        assert new.id != old.id

    async def test_non_utf8_path_round_trips(self, repository: Repository) -> None:
        path = os.fsdecode(b"/media/caf\xe9.mkv")
        await repository.upsert_videos([video(path)])

        page = await repository.list_videos(under="/media", limit=10, cursor=None)

        assert [v.path for v in page.videos] == [path]
        assert os.fsencode(page.videos[0].path) == b"/media/caf\xe9.mkv"

    async def test_under_compares_whole_components(
        self, repository: Repository
    ) -> None:
        await repository.upsert_videos(
            [
                video("/media/tv/a.mkv"),
                video("/media/tv/s1/b.mkv"),
                video("/media/tv-old/c.mkv"),
                video("/media/tv.mkv"),
            ]
        )

        page = await repository.list_videos(under="/media/tv", limit=10, cursor=None)
        states = await repository.file_states("/media/tv/")

        assert [v.path for v in page.videos] == [
            "/media/tv/a.mkv",
            "/media/tv/s1/b.mkv",
        ]
        assert sorted(states) == ["/media/tv/a.mkv", "/media/tv/s1/b.mkv"]

    async def test_under_a_file_selects_that_file(self, repository: Repository) -> None:
        await repository.upsert_videos([video("/media/a.mkv"), video("/media/a.mkv2")])

        states = await repository.file_states("/media/a.mkv")

        assert list(states) == ["/media/a.mkv"]

    async def test_pagination_visits_every_entry_once(
        self, repository: Repository
    ) -> None:
        paths = [f"/media/{i:03d}.mp4" for i in range(25)]
        await repository.upsert_videos([video(path) for path in reversed(paths)])

        seen: list[str] = []
        cursor = None
        pages = 0
        while True:
            page = await repository.list_videos(under=None, limit=10, cursor=cursor)
            seen.extend(v.path for v in page.videos)
            pages += 1
            if page.next_cursor is None:
                break
            cursor = page.next_cursor

        assert seen == paths
        assert pages == 3

    async def test_last_full_page_has_no_cursor(self, repository: Repository) -> None:
        await repository.upsert_videos([video("/media/a.mp4"), video("/media/b.mp4")])

        page = await repository.list_videos(under=None, limit=2, cursor=None)

        assert len(page.videos) == 2
        assert page.next_cursor is None

    async def test_cursor_past_deleted_entry_still_works(
        self, repository: Repository
    ) -> None:
        await repository.upsert_videos(
            [video("/media/a.mp4"), video("/media/b.mp4"), video("/media/c.mp4")]
        )
        page = await repository.list_videos(under=None, limit=1, cursor=None)
        await repository.delete_videos(["/media/a.mp4"])

        rest = await repository.list_videos(
            under=None, limit=10, cursor=page.next_cursor
        )

        assert [v.path for v in rest.videos] == ["/media/b.mp4", "/media/c.mp4"]

    @pytest.mark.parametrize("cursor", ["garbage", "p1.!!!", "", "p1.", "p1.YWJj"])
    async def test_invalid_cursor_rejected(
        self, repository: Repository, cursor: str
    ) -> None:
        with pytest.raises(InvalidParamsError, match="invalid cursor"):
            await repository.list_videos(under=None, limit=10, cursor=cursor)

    async def test_delete_under_removes_tree_only(self, repository: Repository) -> None:
        await repository.upsert_videos(
            [video("/media/tv/a.mkv"), video("/media/tv-old/b.mkv")]
        )

        removed = await repository.delete_videos_under("/media/tv")

        assert removed == 1
        assert await repository.get_video("/media/tv-old/b.mkv") is not None

    async def test_set_offline_and_back(self, repository: Repository) -> None:
        await repository.upsert_videos([video("/media/a.mkv"), video("/other/b.mkv")])

        marked = await repository.set_offline("/media", True)
        offline = await repository.get_video("/media/a.mkv")
        other = await repository.get_video("/other/b.mkv")
        restored = await repository.set_offline("/media", False)

        assert marked == 1
        assert offline is not None and offline.offline is True
        assert other is not None and other.offline is False
        assert restored == 1

    async def test_file_states_reports_identity(self, repository: Repository) -> None:
        await repository.upsert_videos([video("/media/a.mp4", complete=False)])

        states = await repository.file_states("/media")

        state = states["/media/a.mp4"]
        assert (state.size, state.mtime_ns, state.ctime_ns) == (100, 1, 2)
        assert (state.inode, state.device) == (3, 4)
        assert state.complete is False

    async def test_state_rows_convert_to_the_same_states(
        self, repository: Repository
    ) -> None:
        big = 2**64 - 5  # stored negative in a signed SQLite integer
        await repository.upsert_videos(
            [
                video("/media/a.mp4", complete=False),
                video("/media/b\udcff.mp4", inode=big, device=big),
                video("/other/c.mp4"),
            ]
        )
        await repository.set_fingerprints([("/media/a.mp4", "ab12")])

        rows = await repository.state_rows("/media")
        states = await repository.file_states("/media")

        assert [row[0] for row in rows] == [b"/media/a.mp4", b"/media/b\xff.mp4"]
        assert (rows[1][4], rows[1][5]) == (big, big)
        assert dict(map(state_of_row, rows)) == states
        assert states["/media/a.mp4"].fingerprint == "ab12"

    async def test_file_states_at_given_paths(self, repository: Repository) -> None:
        await repository.upsert_videos(
            [video("/media/a.mp4"), video("/media/z.mp4"), video("/other/b.mp4")]
        )
        # More paths than one query takes, so the lookup runs in chunks.
        absent = [f"/media/missing-{index:04d}.mp4" for index in range(600)]

        states = await repository.file_states_at(
            ["/media/z.mp4", *absent, "/media/a.mp4", "/media/a.mp4"]
        )

        assert sorted(states) == ["/media/a.mp4", "/media/z.mp4"]
        assert states["/media/z.mp4"].size == 100


class TestJobs:
    async def test_insert_assigns_increasing_ids(self, repository: Repository) -> None:
        first = await repository.insert_job(job())
        second = await repository.insert_job(job())

        assert first.id > 0
        assert second.id > first.id

    async def test_update_then_get(self, repository: Repository) -> None:
        stored = await repository.insert_job(job(params={"recursive": False}))
        finished = msgspec.structs.replace(
            stored,
            status=JobState.COMPLETE,
            started_at=1001.0,
            finished_at=1002.0,
            result={"scanned": 3, "errors": [{"path": "/media/x", "kind": "io"}]},
            progress=Progress(done=3, total=3),
        )

        await repository.update_job(finished)

        assert await repository.get_job(stored.id) == finished

    async def test_get_unknown_job_is_none(self, repository: Repository) -> None:
        assert await repository.get_job(12345) is None

    async def test_list_newest_first_with_filter(self, repository: Repository) -> None:
        a = await repository.insert_job(job("/media/a"))
        b = await repository.insert_job(job("/media/b"))
        await repository.update_job(
            msgspec.structs.replace(a, status=JobState.FAILED, finished_at=5.0)
        )

        everything = await repository.list_jobs(status=None, limit=10)
        failed = await repository.list_jobs(status=JobState.FAILED, limit=10)

        assert [j.id for j in everything] == [b.id, a.id]
        assert [j.path for j in failed] == ["/media/a"]

    async def test_count_includes_every_state(self, repository: Repository) -> None:
        await repository.insert_job(job())

        counts = await repository.count_jobs()

        assert counts == {
            "pending": 1,
            "running": 0,
            "complete": 0,
            "failed": 0,
            "timeout": 0,
            "cancelled": 0,
        }

    async def test_requeue_interrupted_jobs(self, repository: Repository) -> None:
        stored = await repository.insert_job(job())
        await repository.update_job(
            msgspec.structs.replace(
                stored,
                status=JobState.RUNNING,
                started_at=3.0,
                progress=Progress(done=1, total=9),
            )
        )

        requeued = await repository.requeue_interrupted_jobs()
        again = await repository.get_job(stored.id)

        assert requeued == 1
        assert again is not None
        assert again.status == JobState.PENDING
        assert again.started_at is None
        assert again.progress is None
        assert [j.id for j in await repository.unfinished_jobs()] == [stored.id]

    async def test_prune_by_age_and_count(self, repository: Repository) -> None:
        ids = []
        for finished_at in (10.0, 20.0, 30.0, 40.0):
            stored = await repository.insert_job(job())
            await repository.update_job(
                msgspec.structs.replace(
                    stored, status=JobState.COMPLETE, finished_at=finished_at
                )
            )
            ids.append(stored.id)
        pending = await repository.insert_job(job())

        pruned = await repository.prune_jobs(finished_before=15.0, keep=2)
        left = await repository.list_jobs(status=None, limit=10)

        assert pruned == 2
        assert [j.id for j in left] == [pending.id, ids[3], ids[2]]


class TestSQLiteSchema:
    async def test_reopen_keeps_data_and_sets_wal(self, tmp_path: Path) -> None:
        path = str(tmp_path / "reelwatch.db")
        repo = SQLiteRepository(path)
        await repo.open()
        await repo.upsert_videos([video("/media/a.mp4")])
        await repo.close()

        repo = SQLiteRepository(path)
        await repo.open()
        count = await repo.count_videos()
        await repo.close()

        with sqlite3.connect(path) as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            mode = db.execute("PRAGMA journal_mode").fetchone()[0]
        assert count == 1
        assert version == SCHEMA_VERSION
        assert mode == "wal"

    async def test_version_1_catalog_is_migrated(self, tmp_path: Path) -> None:
        """A catalog written before fingerprints existed keeps its entries."""
        path = tmp_path / "reelwatch.db"
        with sqlite3.connect(path) as db:
            db.executescript(_MIGRATIONS[0])
            db.execute(
                "INSERT INTO videos (path, root, size, mtime_ns, ctime_ns, inode, "
                "device) VALUES (?, ?, 1, 2, 3, 4, 5)",
                (b"/media/a.mkv", b"/media"),
            )
            db.execute("PRAGMA user_version = 1")
        repo = SQLiteRepository(str(path))

        await repo.open()
        states = await repo.file_states("/media")
        await repo.set_fingerprints([("/media/a.mkv", "ab" * 16)])
        found = await repo.videos_with_fingerprint(1, "ab" * 16)
        await repo.close()

        assert list(states) == ["/media/a.mkv"]
        assert states["/media/a.mkv"].fingerprint is None
        assert [video.path for video in found] == ["/media/a.mkv"]

    async def test_newer_schema_is_refused(self, tmp_path: Path) -> None:
        path = tmp_path / "reelwatch.db"
        with sqlite3.connect(path) as db:
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        repo = SQLiteRepository(str(path))

        newer = SCHEMA_VERSION + 1
        with pytest.raises(StorageError, match=f"has schema version {newer}, but this"):
            await repo.open()

    async def test_not_a_database_is_refused(self, tmp_path: Path) -> None:
        path = tmp_path / "reelwatch.db"
        path.write_bytes(b"this is not sqlite" * 100)
        repo = SQLiteRepository(str(path))

        with pytest.raises(StorageError, match="cannot open the catalog database"):
            await repo.open()

    async def test_call_before_open_names_the_file(self, tmp_path: Path) -> None:
        repo = SQLiteRepository(str(tmp_path / "reelwatch.db"))

        with pytest.raises(StorageError, match="is not open"):
            await repo.count_videos()


def test_is_same_or_under() -> None:
    assert is_same_or_under("/media/tv", "/media/tv")
    assert is_same_or_under("/media/tv/a", "/media/tv/")
    assert not is_same_or_under("/media/tv-old/a", "/media/tv")
    assert is_same_or_under("/anything", "/")


def test_cursor_is_opaque_text() -> None:
    cursor = encode_cursor(os.fsdecode(b"/media/\xff.mkv"))

    assert cursor.isascii()
    assert "/media" not in cursor


class TestMoves:
    """Moving entries keeps their ids, whatever is at the new place."""

    async def test_move_video_keeps_id_and_takes_new_fields(
        self, repository: Repository
    ) -> None:
        await repository.upsert_videos([video("/media/a.mkv", duration_s=5.0)])
        (before,) = (
            await repository.list_videos(under=None, limit=5, cursor=None)
        ).videos
        moved = msgspec.structs.replace(before, path="/media/b.mkv", ctime_ns=9)

        assert await repository.move_video("/media/a.mkv", moved)
        after = await repository.get_video("/media/b.mkv")

        assert await repository.get_video("/media/a.mkv") is None
        assert after is not None
        assert after.id == before.id
        assert after.ctime_ns == 9
        assert after.duration_s == 5.0

    async def test_move_video_of_unknown_path_changes_nothing(
        self, repository: Repository
    ) -> None:
        assert not await repository.move_video("/media/x.mkv", video("/media/y.mkv"))
        assert await repository.count_videos() == 0

    async def test_move_tree_renames_every_entry_below(
        self, repository: Repository
    ) -> None:
        await repository.upsert_videos(
            [
                video("/media/Show/a.mkv"),
                video("/media/Show/s1/b.mkv"),
                video("/media/Show 2/c.mkv"),
                video("/media/show/stale.mkv"),
            ]
        )
        ids = {v.path: v.id for v in await repository.videos_under("/media")}

        moved = await repository.move_tree("/media/Show", "/media/show", "/media")
        after = {v.path: v.id for v in await repository.videos_under("/media")}

        assert moved == 2
        assert after == {
            "/media/show/a.mkv": ids["/media/Show/a.mkv"],
            "/media/show/s1/b.mkv": ids["/media/Show/s1/b.mkv"],
            "/media/Show 2/c.mkv": ids["/media/Show 2/c.mkv"],
        }

    async def test_move_tree_into_other_root_sets_root(
        self, repository: Repository
    ) -> None:
        await repository.upsert_videos([video("/media/a/x.mkv")])

        await repository.move_tree("/media/a", "/other/a", "/other")
        (moved,) = await repository.videos_under("/other")

        assert moved.path == "/other/a/x.mkv"
        assert moved.root == "/other"

    async def test_restore_videos_brings_back_the_same_id(
        self, repository: Repository
    ) -> None:
        await repository.upsert_videos([video("/media/a.mkv"), video("/media/b.mkv")])
        (gone,) = await repository.videos_under("/media/a.mkv")
        await repository.delete_videos(["/media/a.mkv"])

        await repository.restore_videos(
            [msgspec.structs.replace(gone, path="/m/c.mkv")]
        )
        await repository.upsert_videos([video("/media/d.mkv")])
        restored = await repository.get_video("/m/c.mkv")
        newest = await repository.get_video("/media/d.mkv")

        assert restored is not None
        assert restored.id == gone.id
        assert newest is not None
        assert newest.id > max(gone.id, restored.id)

    async def test_fingerprint_follows_moves_and_clears_on_write(
        self, repository: Repository
    ) -> None:
        await repository.upsert_videos([video("/media/a.mkv")])
        await repository.set_fingerprints([("/media/a.mkv", "f1")])
        (stored,) = await repository.videos_under("/media")
        await repository.move_video(
            "/media/a.mkv", msgspec.structs.replace(stored, path="/media/b.mkv")
        )

        moved = await repository.videos_with_fingerprint(100, "f1")
        other_size = await repository.videos_with_fingerprint(101, "f1")
        await repository.upsert_videos([video("/media/b.mkv", size=100)])
        rewritten = await repository.videos_with_fingerprint(100, "f1")

        assert [v.path for v in moved] == ["/media/b.mkv"]
        assert other_size == []
        assert rewritten == []

    async def test_fingerprint_lookup_leaves_out_a_device(
        self, repository: Repository
    ) -> None:
        await repository.upsert_videos(
            [video("/media/a.mkv", device=4), video("/media/b.mkv", device=5)]
        )
        await repository.set_fingerprints(
            [("/media/a.mkv", "f1"), ("/media/b.mkv", "f1")]
        )

        other = await repository.videos_with_fingerprint(100, "f1", not_on_device=4)
        every = await repository.videos_with_fingerprint(100, "f1")

        assert [v.path for v in other] == ["/media/b.mkv"]
        assert [v.path for v in every] == ["/media/a.mkv", "/media/b.mkv"]

    async def test_fingerprinted_sizes_only_on_other_devices(
        self, repository: Repository
    ) -> None:
        await repository.upsert_videos(
            [
                video("/media/a.mkv", size=10, device=1),
                video("/media/b.mkv", size=20, device=2),
                video("/media/c.mkv", size=30, device=2),
            ]
        )
        await repository.set_fingerprints(
            [("/media/a.mkv", "f"), ("/media/b.mkv", "g")]
        )

        sizes = await repository.fingerprinted_sizes([10, 20, 30, 40], not_on_device=2)

        assert sizes == {10}

    async def test_videos_with_inodes_matches_device_and_inode(
        self, repository: Repository
    ) -> None:
        big = 1 << 63  # st_ino is unsigned 64-bit; SQLite stores it signed
        await repository.upsert_videos(
            [
                video("/media/a.mkv", device=1, inode=10),
                video("/media/b.mkv", device=1, inode=10),
                video("/media/c.mkv", device=2, inode=10),
                video("/media/d.mkv", device=1, inode=big),
            ]
        )

        found = await repository.videos_with_inodes([(1, 10), (1, big)])

        assert sorted(v.path for v in found) == [
            "/media/a.mkv",
            "/media/b.mkv",
            "/media/d.mkv",
        ]
