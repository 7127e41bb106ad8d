"""``python -m bench.scrape`` end to end at a small backlog: it measures the state it claims."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_bench_scrape_builds_the_backlog_and_times_its_scrapes(
    service_env: dict[str, str], tmp_path: Path
) -> None:
    # Given the session's servers (the harness makes its own database and uses Redis db 11)
    env = {
        **os.environ,
        "REDIS_URL": service_env["REDIS_URL"],
        "DATABASE_URL": service_env["DATABASE_URL"],
    }
    out = tmp_path / "scrape.json"

    # When the scrape benchmark runs at 2,000 open orders, three scrapes each way
    done = subprocess.run(
        [
            *(sys.executable, "-m", "bench.scrape", "--orders", "2000", "--runs", "3"),
            *("--out", str(out), "--work-dir", str(tmp_path / "w")),
        ],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )

    # Then the scrape saw the backlog as built: all open, all but one queued and one
    # leased in the pool, 100 running batches; and every timing is recorded
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(out.read_text())
    assert result["scraped"] == {"pool_items": 1998, "open_items": 2000, "running_batches": 100}
    for timing in ("steady", "http", "baseline_count_all_items"):
        assert result[timing]["runs"] == 3 and result[timing]["median_ms"] > 0
    assert result["stage_outputs"] == 8000
