"""``python -m bench.run`` end to end at a tiny size: the harness works, not how fast."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
REPO_ROOT = Path(__file__).resolve().parents[2]


def test_bench_run_records_and_renders_scenarios_a_and_b(
    service_env: dict[str, str], tmp_path: Path
) -> None:
    # Given the session's servers (the harness makes its own database and uses Redis db 11)
    env = {
        **os.environ,
        "REDIS_URL": service_env["REDIS_URL"],
        "DATABASE_URL": service_env["DATABASE_URL"],
    }
    out, doc, chart = tmp_path / "r.json", tmp_path / "B.md", tmp_path / "c.png"

    # When the benchmark runs A and B with 300 orders each, a short run twice
    done = subprocess.run(
        [
            *(sys.executable, "-m", "bench.run", "--sizes", "300", "--scenarios", "A,B"),
            *("--short-repeats", "2"),
            *("--out", str(out), "--doc", str(doc), "--chart", str(chart)),
            *("--work-dir", str(tmp_path / "w")),
        ],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )

    # Then both runs are recorded with plausible figures, and the page and chart exist
    assert done.returncode == 0, done.stdout + done.stderr
    runs = {run["scenario"]: run for run in json.loads(out.read_text())["runs"]}
    assert set(runs) == {"A", "B"}
    for run in runs.values():
        assert run["orders"] == 300
        assert run["items_per_s"] > 0
        assert run["redis_bytes_per_order"] > 0
        # a few seconds of work: run twice, the slower kept (the lower middle of two)
        assert len(run["extra"]["repeats"]) == 2
        assert run["items_per_s"] == pytest.approx(min(run["extra"]["repeats"]), abs=0.05)
    page = doc.read_text()
    assert "## Throughput" in page
    assert "| orders | A items/s | B items/s |\n" in page
    assert "Runs that took under 30 s were repeated" in page
    assert chart.read_bytes().startswith(PNG_SIGNATURE)
