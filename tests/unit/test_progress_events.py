"""Event streams' pure parts: snapshots from the progress hash, ids, milestones, cursors."""

from __future__ import annotations

import pytest

from pipeline.manifest import ManifestError
from pipeline.paging import decode_cursor, encode_cursor
from pipeline.progress_events import Snapshot, event_id, milestones_between, parse_event_id


def _hash(**fields: object) -> dict[str, str]:
    base = {"total": 8, "started_at": 100.0, "updated_at": 104.0, "status": "running"}
    return {name: str(value) for name, value in {**base, **fields}.items()}


def test_a_snapshot_reads_counts_stages_and_percentage_from_the_hash() -> None:
    snapshot = Snapshot.from_hash("b1", _hash(completed=2, failed=2, preflight_done=8, qc_done=4))
    assert (snapshot.ended, snapshot.final) == (4, False)
    assert snapshot.progress_percentage == 50.0
    assert snapshot.as_dict()["stages"]["preflight"] == {"done": 8, "failed": 0}
    assert snapshot.counted == 4 + 8 + 4


def test_a_final_status_makes_the_snapshot_final() -> None:
    assert Snapshot.from_hash("b1", _hash(completed=8, status="completed")).final


@pytest.mark.parametrize(
    ("before", "now", "total", "passed"),
    [
        (0, 0, 8, []),
        (0, 2, 8, [25]),
        (0, 8, 8, [25, 50, 75, 100]),
        (2, 6, 8, [50, 75]),
        (6, 8, 8, [100]),
        (8, 8, 8, []),
        (0, 1, 3, [25]),
        (0, 0, 0, []),
    ],
)
def test_milestones_are_the_shares_passed_between_two_counts(
    before: int, now: int, total: int, passed: list[int]
) -> None:
    assert milestones_between(before, now, total) == passed


def test_an_event_id_carries_the_ended_count_back() -> None:
    snapshot = Snapshot.from_hash("b1", _hash(completed=3, failed=1, writing_done=5))
    assert parse_event_id(event_id(snapshot)) == 4
    assert parse_event_id(None) == 0
    assert parse_event_id("garbage") == 0


def test_a_cursor_round_trips_and_a_forged_one_is_refused() -> None:
    cursor = encode_cursor(["2026-11-30T10:00:00+00:00", "batch-1"])
    assert decode_cursor(cursor, 2) == ["2026-11-30T10:00:00+00:00", "batch-1"]
    for bad in ("garbage!", encode_cursor([1])):
        with pytest.raises(ManifestError) as error:
            decode_cursor(bad, 2)
        assert error.value.field == "cursor"


def test_events_after_skip_what_the_client_has_and_end_with_the_status() -> None:
    from pipeline.progress_events import events_after

    running = Snapshot.from_hash("b1", _hash(completed=4))
    first = events_after(running, None, 0)
    assert [(e.kind, e.data.get("percent")) for e in first] == [
        ("progress", None), ("milestone", 25), ("milestone", 50),
    ]  # fmt: skip
    assert events_after(running, first[0].id, 4) == []
    done = Snapshot.from_hash("b1", _hash(completed=8, status="completed"))
    last = events_after(done, first[0].id, 4)
    assert [e.kind for e in last] == ["progress", "milestone", "milestone", "status"]
    assert last[-1].data == {"batch_id": "b1", "status": "completed"}
