"""``batchline status``'s and ``monitor``'s tables, drawn on a narrow terminal."""

from __future__ import annotations

from typing import Any

from rich.console import Console, Group

from cli.monitor_view import monitor_frame, progress_bar
from cli.status_view import status_renderables

FAILURES = [
    {
        "order_id": f"spring-fail-{kind}",
        "stage": "preflight",
        "error_class": "PolicyViolation",
        "code": f"code_{kind}",
        "reason": f"{kind}: " + "a long explanation of what went wrong " * 3,
    }
    for kind in ("duplicate", "forbidden-topic")
]


def status(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "batch_id": "spring-normal",
        "status": "running",
        "priority": "normal",
        "total": 200,
        "completed": 50,
        "failed": 2,
        "cancelled": 0,
        "remaining": 148,
        "progress_percentage": 26.0,
        "success_rate": 96.15,
        "velocity": 1.3,
        "estimated_time_remaining": 113.8,
        "eta_human": "1 min 54 s",
        "stages": {s: {"done": 1, "failed": 0} for s in ("preflight", "writing", "qc", "delivery")},
        "in_stage": {"preflight": 3, "writing": 3, "qc": 3, "delivery": 3},
        "created_at": "2026-11-30T14:00:00+00:00",
        "finalized_at": None,
        "halted": False,
        "halt_reason": None,
    }
    return {**base, **changes}


def draw(renderable: Any, width: int = 100) -> str:
    console = Console(width=width, record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


def test_failed_orders_keep_ids_and_codes_whole_on_a_narrow_terminal() -> None:
    text = draw(Group(*status_renderables(status(), FAILURES)))

    for failure in FAILURES:
        assert failure["order_id"] in text and failure["code"] in text
    assert "failed orders (2 of 2)" in text


def test_the_table_has_units_and_no_none() -> None:
    text = draw(
        Group(
            *status_renderables(
                status(
                    success_rate=None,
                    eta_human="unknown",
                    estimated_time_remaining=None,
                    velocity=0.0,
                )
            )
        )
    )

    assert "None" not in text
    assert "unknown (no order has ended yet)" in text and "0 orders/s" in text
    assert "1 min 54 s (113.8 s)" in draw(Group(*status_renderables(status())))


def test_a_halt_comes_first_in_red_words() -> None:
    text = draw(Group(*status_renderables(status(halted=True, halt_reason="disk full"))))

    assert text.startswith("HALTED") and "disk full" in text
    assert "running (system halted)" in text


def test_progress_bar_fills_in_proportion() -> None:
    assert progress_bar(0, 10, width=4) == "░░░░"
    assert progress_bar(5, 10, width=4) == "██░░"
    assert progress_bar(10, 10, width=4) == "████"
    assert progress_bar(0, 0, width=4) == "████"  # an empty batch is done


def test_a_monitor_frame_shows_each_part() -> None:
    snapshot = {
        "at": "2026-11-30T14:00:00+00:00",
        "halted": False,
        "halt": None,
        "batch_counts": {"running": 1},
        "lanes": {"high": {"messages": 2, "pooled": 5, "oldest_wait_seconds": 75.0}},
        "queues": {"batch.maintenance": 0},
        "open_batches": 1,
        "page": 1,
        "pages": 1,
        "batches": [{**status(), "batch_id": "spring-normal"}],
        "slots": {
            "global": {"in_use": 3, "limit": 50},
            "busiest": [
                {"scope": "publisher", "name": "blog.example.com", "in_use": 5, "limit": 5}
            ],
        },
        "rate_limits": {
            "writer": {
                "tokens": 4.5,
                "burst": 20,
                "per_minute": 60.0,
                "per_key": False,
                "calls_in_flight": None,
                "concurrency": None,
            }
        },
        "errors": {"hours": 24, "by_class": {"PolicyViolation": 2}, "this_hour": 2},
        "recent_failures": [
            {
                "batch_id": "spring-normal",
                "order_id": "o-1",
                "error_class": "PolicyViolation",
                "reason": "forbidden_topic",
                "at": "",
            }
        ],
    }

    text = draw(monitor_frame(snapshot), width=120)

    for shown in (
        "1 min 15 s",
        "spring-normal",
        "52/200 (26 %)",
        "1.3/s",
        "1 min 54 s",
        "publisher blog.example.com",
        "4.5/20",
        "PolicyViolation",
        "forbidden_topic",
    ):
        assert shown in text, shown
