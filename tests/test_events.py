"""Tests of the change journal, subscriptions, the publishing repository and metrics."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import msgspec
import pytest

from reelwatch.errors import InvalidParamsError
from reelwatch.events import (
    ChangeJournal,
    EventBus,
    PublishingRepository,
    SubscriptionDropped,
)
from reelwatch.metrics import Counter, Histogram, resolution_bucket
from reelwatch.models import Video
from reelwatch.repository import MemoryRepository

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def video(path: str, **fields: object) -> Video:
    return msgspec.convert(
        {"id": 0, "path": path, "size": 1, "mtime_ns": 1, **fields}, Video
    )


class TestChangeJournal:
    def test_since_keeps_latest_change_per_path(self) -> None:
        journal = ChangeJournal(instance="abc")
        start = journal.cursor
        journal.record("/r/a.mp4", removed=False)
        journal.record("/r/b.mp4", removed=False)
        journal.record("/r/a.mp4", removed=True, video_id=4)

        changes = journal.since(start, under=None, limit=10)

        assert [(e.path, e.removed) for e in changes.entries] == [
            ("/r/b.mp4", False),
            ("/r/a.mp4", True),
        ]
        assert changes.entries[1].video_id == 4
        assert changes.cursor == "j1.abc.3"
        assert not changes.more

    def test_limit_sets_more_and_resumes(self) -> None:
        journal = ChangeJournal(instance="abc")
        for name in "abc":
            journal.record(f"/r/{name}", removed=False)

        first = journal.since("j1.abc.0", under=None, limit=2)
        rest = journal.since(first.cursor, under=None, limit=2)

        assert [e.path for e in first.entries] == ["/r/a", "/r/b"]
        assert first.more
        assert [e.path for e in rest.entries] == ["/r/c"]
        assert not rest.more

    def test_under_filters_by_component(self) -> None:
        journal = ChangeJournal(instance="abc")
        journal.record("/r/tv/a", removed=False)
        journal.record("/r/tv-old/b", removed=False)

        changes = journal.since("j1.abc.0", under="/r/tv", limit=10)

        assert [e.path for e in changes.entries] == ["/r/tv/a"]

    def test_evicted_changes_make_old_cursor_fresh(self) -> None:
        journal = ChangeJournal(instance="abc", max_entries=2)
        old = journal.cursor
        for name in "abc":
            journal.record(f"/r/{name}", removed=False)

        assert journal.since(old, under=None, limit=10).fresh_instance
        assert not journal.since("j1.abc.1", under=None, limit=10).fresh_instance
        assert len(journal) == 2

    def test_other_instance_is_fresh(self) -> None:
        journal = ChangeJournal(instance="abc")

        assert journal.since("j1.def.0", under=None, limit=10).fresh_instance

    @pytest.mark.parametrize(
        "cursor", ["", "j1.abc", "j1.abc.x", "p1.abc.1", "j1.abc.7"]
    )
    def test_invalid_cursor_is_rejected(self, cursor: str) -> None:
        journal = ChangeJournal(instance="abc")

        with pytest.raises(InvalidParamsError, match="since cursor"):
            journal.since(cursor, under=None, limit=10)


class TestSubscription:
    async def test_lines_arrive_in_order(self) -> None:
        bus = EventBus()
        subscription = bus.subscribe(["video.added"], max_backlog=10)
        bus.publish("video.added", {"n": 1})
        bus.publish("video.removed", {"n": 2})
        bus.publish("video.added", {"n": 3})

        lines = await subscription.next_lines()

        assert [msgspec.json.decode(line)["params"]["n"] for line in lines] == [1, 3]

    async def test_overflow_drops_and_calls_back(self) -> None:
        bus = EventBus()
        dropped: list[bool] = []
        subscription = bus.subscribe(
            ["root.state"], max_backlog=3, on_drop=lambda: dropped.append(True)
        )
        for index in range(5):
            bus.publish("root.state", {"n": index})

        with pytest.raises(SubscriptionDropped):
            await subscription.next_lines()
        assert dropped == [True]
        assert bus.subscriber_count == 0
        assert len(subscription) == 0

    async def test_finish_drains_then_ends(self) -> None:
        bus = EventBus()
        subscription = bus.subscribe(["root.state"], max_backlog=3)
        bus.publish("root.state", {})
        subscription.finish()

        assert len(await subscription.next_lines()) == 1
        assert await subscription.next_lines() == []

    async def test_waiter_wakes_on_publish(self) -> None:
        bus = EventBus()
        subscription = bus.subscribe(["root.state"], max_backlog=3)
        received: list[bytes] = []

        async def receive() -> None:
            received.extend(await subscription.next_lines())

        async with anyio.create_task_group() as task_group:
            task_group.start_soon(receive)
            await anyio.lowlevel.checkpoint()
            bus.publish("root.state", {"path": "/r"})

        assert len(received) == 1


class TestPublishingRepository:
    async def make(self) -> tuple[PublishingRepository, EventBus, ChangeJournal]:
        bus = EventBus()
        journal = ChangeJournal(instance="abc")
        repository = PublishingRepository(MemoryRepository(), bus=bus, journal=journal)
        await repository.open()
        return repository, bus, journal

    async def test_upsert_publishes_added_then_updated(self) -> None:
        repository, bus, journal = await self.make()
        subscription = bus.subscribe(["video.added", "video.updated"], max_backlog=10)

        await repository.upsert_videos([video("/r/a.mp4")])
        await repository.upsert_videos([video("/r/a.mp4", size=2)])
        lines = [msgspec.json.decode(line) for line in await subscription.next_lines()]

        assert [line["method"] for line in lines] == ["video.added", "video.updated"]
        assert lines[0]["params"]["id"] == lines[1]["params"]["id"]
        assert lines[1]["params"]["size"] == 2
        assert journal.cursor == "j1.abc.2"

    async def test_delete_under_journals_removals_with_ids(self) -> None:
        repository, bus, journal = await self.make()
        await repository.upsert_videos([video("/r/d/a.mp4"), video("/r/d/b.mp4")])
        cursor = journal.cursor
        subscription = bus.subscribe(["video.removed"], max_backlog=10)

        removed = await repository.delete_videos_under("/r/d")
        changes = journal.since(cursor, under=None, limit=10)
        lines = await subscription.next_lines()

        assert removed == 2
        assert [(e.path, e.removed) for e in changes.entries] == [
            ("/r/d/a.mp4", True),
            ("/r/d/b.mp4", True),
        ]
        assert all(e.video_id is not None for e in changes.entries)
        assert len(lines) == 2

    async def test_move_publishes_removed_with_moved_to(self) -> None:
        repository, bus, _ = await self.make()
        await repository.upsert_videos([video("/r/old.mp4")])
        before = await repository.get_video("/r/old.mp4")
        assert before is not None
        subscription = bus.subscribe(["video.removed", "video.added"], max_backlog=10)

        moved = await repository.move_video(
            "/r/old.mp4", video("/r/new.mp4", root="/r")
        )
        lines = [msgspec.json.decode(line) for line in await subscription.next_lines()]

        assert moved
        assert lines[0]["params"] == {
            "id": before.id,
            "path": "/r/old.mp4",
            "moved_to": "/r/new.mp4",
        }
        assert lines[1]["method"] == "video.added"
        assert lines[1]["params"]["id"] == before.id

    async def test_job_result_with_non_utf8_name_is_stored(self) -> None:
        repository, _, _ = await self.make()
        from reelwatch.models import Job, JobState

        name = "/r/caf\udce9.mp4"
        job = await repository.insert_job(
            Job(id=0, kind="scan", path="/r", status=JobState.PENDING, created_at=1.0)
        )
        finished = msgspec.structs.replace(
            job,
            status=JobState.COMPLETE,
            result={"errors": [{"path": name, "message": f"bad {name}"}]},
        )

        await repository.update_job(finished)
        stored = await repository.get_job(job.id)

        assert stored is not None
        [error] = stored.result["errors"] if stored.result else []
        assert error["path"] == "/r/caf\ufffd.mp4"
        assert error["path_bytes_b64"] == "L3IvY2Fm6S5tcDQ="


@pytest.mark.parametrize(
    ("width", "height", "bucket"),
    [
        (3840, 2160, "2160p"),
        (1920, 800, "1080p"),
        (1080, 1920, "1080p"),
        (1280, 720, "720p"),
        (640, 360, "480p"),
        (320, 240, "sd"),
        (None, None, "unknown"),
    ],
)
def test_resolution_bucket(width: int | None, height: int | None, bucket: str) -> None:
    assert resolution_bucket(width, height) == bucket


def test_histogram_renders_cumulative_buckets() -> None:
    histogram = Histogram("x_seconds", "Test.", buckets=(0.1, 1.0))
    for value in (0.05, 0.5, 0.7, 5.0):
        histogram.observe(value)

    assert histogram.render() == [
        "# HELP x_seconds Test.",
        "# TYPE x_seconds histogram",
        'x_seconds_bucket{le="0.1"} 1',
        'x_seconds_bucket{le="1"} 3',
        'x_seconds_bucket{le="+Inf"} 4',
        "x_seconds_sum 6.25",
        "x_seconds_count 4",
    ]


def test_counter_escapes_label_values() -> None:
    counter = Counter("errors_total", "Errors.", ["kind"])
    counter.inc(kind='say "hi"\n')

    assert counter.render()[-1] == 'errors_total{kind="say \\"hi\\"\\n"} 1'
