"""``batchline failures ID [--json]`` as an operator runs it, against the session's servers."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from cli.sample_orders import orders_built_to_fail
from tests.e2e.test_cli import batchline
from tests.integration.helpers import wait_for_final

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def failed_batch(workers: Any, service_env: dict[str, str]) -> str:
    """A finished batch of the demo's orders built to fail (six of nine fail)."""
    from tasks import submit_batch

    tag = f"cf-{uuid.uuid4().hex[:6]}"
    submit_batch(orders_built_to_fail(tag), "tests", "high", {"batch_id": tag})
    assert wait_for_final([tag]) == {tag: "PARTIAL"}
    return tag


def test_failures_prints_the_tables_an_operator_reads(
    failed_batch: str, service_env: dict[str, str]
) -> None:
    shown = batchline("failures", failed_batch, env={**service_env, "COLUMNS": "160"})

    assert shown.returncode == 0, shown.stderr
    for heading in ("by category", "by reason", "recommendations", "failed orders (6 of 6)"):
        assert heading in shown.stdout
    assert "publisher_language" in shown.stdout and "PERMANENT" in shown.stdout
    assert f"batchline recover {failed_batch} --all" in shown.stdout


def test_failures_json_is_the_analysis(failed_batch: str, service_env: dict[str, str]) -> None:
    shown = batchline("failures", failed_batch, "--json", env=service_env)

    assert shown.returncode == 0, shown.stderr
    report = json.loads(shown.stdout)
    assert (report["batch_id"], report["total_failures"], report["permanent_count"]) == (
        failed_batch,
        6,
        6,
    )
    assert report["by_stage"] == {"preflight": 5, "qc": 1}
    assert len(report["failed_documents"]) == 6


def test_failures_of_an_unknown_batch_exits_2_with_one_line(service_env: dict[str, str]) -> None:
    shown = batchline("failures", "no-such-batch", env=service_env)

    assert shown.returncode == 2
    assert shown.stdout == ""
    assert shown.stderr.strip() == "error: no batch with id 'no-such-batch'"
