"""Scenario E at a small size: real HTTP writer and publisher, the cap holds, each order once.

Bounded (200 orders, 0.1 s writer, 20 ms webhook, global cap 8) so it fits in
``make test``; it asserts correctness only, never a speed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ORDERS = 200
CAP = 8
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
REPO_ROOT = Path(__file__).resolve().parents[2]


def most_open_at_once(log: Path) -> int:
    """The most writer calls open at one instant, from the mock's ``[start, end]`` lines.

    Its own sweep rather than bench.inflight's, so a bug there cannot hide a breach.
    Ends sort before starts at the same instant: a slot handed on is not an overlap.
    """
    events = []
    for line in log.read_text().splitlines():
        start, end = json.loads(line)
        events += [(start, 1), (end, -1)]
    open_now = most = 0
    for _, step in sorted(events):
        open_now += step
        most = max(most, open_now)
    return most


def test_bench_e_keeps_writer_calls_within_the_cap_and_delivers_every_order_once(
    service_env: dict[str, str], tmp_path: Path
) -> None:
    # Given the session's servers (the harness makes its own database and uses Redis db 11)
    env = {
        **os.environ,
        "REDIS_URL": service_env["REDIS_URL"],
        "DATABASE_URL": service_env["DATABASE_URL"],
    }
    out, doc, chart = tmp_path / "r.json", tmp_path / "B.md", tmp_path / "c.png"

    # When scenario E runs 200 orders through a 0.1 s writer with a global cap of 8
    done = subprocess.run(
        [
            *(sys.executable, "-m", "bench.run", "--scenarios", "E"),
            *("--e-runs", f"0.1:{ORDERS}", "--e-env", f"BATCH_CAP_GLOBAL={CAP}"),
            *("--e-webhook-ms", "20"),
            *("--out", str(out), "--doc", str(doc), "--chart", str(chart)),
            *("--work-dir", str(tmp_path / "w")),
        ],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )

    # Then the writer mock's own log never shows more calls in flight than the cap
    assert done.returncode == 0, done.stdout + done.stderr
    (run,) = json.loads(out.read_text())["runs"]
    extra = run["extra"]
    assert extra["cap_global"] == CAP
    assert extra["writer_calls"] >= ORDERS
    assert 1 <= most_open_at_once(Path(extra["writer_call_log"])) <= CAP
    # And every order was published exactly once, as the publisher counted effective publishes
    assert extra["states"] == {"DELIVERED": ORDERS}
    assert extra["delivered_once"] == ORDERS
    assert extra["delivered_more_than_once"] == 0
    assert extra["webhook_effective"] == ORDERS
    # And celery beat ran beside the workers, as in a deployment (its sweeper re-feeds)
    (beat_log,) = (tmp_path / "w" / "logs").glob("realistic-*-beat-0.log")
    assert "celery beat" in beat_log.read_text()
    # And the page has E's section and its chart
    assert "## E: real latency" in doc.read_text()
    assert (tmp_path / "bench-e-in-flight.png").read_bytes().startswith(PNG_SIGNATURE)
