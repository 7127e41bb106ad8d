"""``batchline report ID --out FILE`` as an operator runs it, on a planted ledger.

The files must exist and be what they say (a PNG, an HTML page with the PNG inside),
and the figures in them must be the collector's for the same batch.
"""

from __future__ import annotations

import base64
import html
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from PIL import Image

from metrics.collector import BatchMetricsCollector
from metrics.report import HTML_DATA_ID, PNG_KEY, chart_data, draw
from tests.e2e.test_cli import batchline
from tests.support_metrics import own_ledger, plant_known_state

pytestmark = pytest.mark.e2e

REPORT_REDIS_DB = 1
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def planted(service_env: dict[str, str]) -> Iterator[dict[str, Any]]:
    """A planted ledger, the CLI's environment for it, and the collector's report of k-done."""
    from tests.conftest import _flush, _redis_database

    redis_url = _redis_database(service_env["REDIS_URL"], REPORT_REDIS_DB)
    _flush(redis_url)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        with own_ledger(service_env) as (database_url, engine):
            plant_known_state(engine, client)
            collector = BatchMetricsCollector(engine=engine, client=client)
            yield {
                "env": {**service_env, "DATABASE_URL": database_url, "REDIS_URL": redis_url},
                "reports": {b: collector.get_performance_report(b) for b in ("k-done", "k-high")},
            }
    finally:
        client.close()
        _flush(redis_url)


def test_png_report_is_a_chart_of_the_collector_figures(
    planted: dict[str, Any], tmp_path: Path
) -> None:
    out = tmp_path / "k-done.png"

    shown = batchline("report", "k-done", "--out", str(out), env=planted["env"])

    assert shown.returncode == 0, shown.stderr
    assert out.read_bytes().startswith(PNG_SIGNATURE)
    with Image.open(out) as image:
        assert image.size == (1200, 800)
        charted = json.loads(image.info[PNG_KEY])
    assert charted == chart_data(planted["reports"]["k-done"])
    assert charted["latency_ms"]["writing"] == [3000, 3000, 3000]


def test_html_report_embeds_the_charts_tables_and_the_collector_report(
    planted: dict[str, Any], tmp_path: Path
) -> None:
    out = tmp_path / "k-high.html"

    shown = batchline("report", "k-high", "--out", str(out), env=planted["env"])

    assert shown.returncode == 0, shown.stderr
    page = out.read_text(encoding="utf-8")
    embedded = re.search(
        rf'<script type="application/json" id="{HTML_DATA_ID}">(.*?)</script>', page, re.S
    )
    assert embedded is not None
    shown_report = json.loads(embedded.group(1))
    # k-high still runs: its elapsed time grows between the two reads
    assert shown_report["batch"].pop("elapsed_s") >= 3600
    report = planted["reports"]["k-high"]
    assert shown_report == {**report, "batch": _without(report["batch"], "elapsed_s")}
    image = re.search(r'src="data:image/png;base64,([^"]+)"', page)
    assert image is not None and base64.b64decode(image.group(1)).startswith(PNG_SIGNATURE)
    # the failures table shows the failed order, its class, code and reason
    failures = page.split('<table id="failures">', 1)[1].split("</table>", 1)[0]
    cells = [html.unescape(c) for c in re.findall(r"<td>(.*?)</td>", failures)]
    assert cells == ["preflight", "QualityRejected", "word_count", "1", "k-high-7", "too short"]
    assert 'src="http' not in page and "<link" not in page  # self-contained


def _without(values: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in values.items() if k != key}


def test_report_without_out_prints_the_collector_report(planted: dict[str, Any]) -> None:
    shown = batchline("report", "k-done", env=planted["env"])

    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == planted["reports"]["k-done"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["no-such-batch"], "no batch 'no-such-batch'"),
        (["k-done", "--out", "report.pdf"], "--out report.pdf: the file must end in .html or .png"),
    ],
)
def test_report_names_what_is_wrong(
    planted: dict[str, Any], tmp_path: Path, args: list[str], message: str
) -> None:
    shown = batchline("report", *args, env=planted["env"])

    assert shown.returncode == 2
    assert message in shown.stderr
    assert not (tmp_path / "report.pdf").exists()


def test_the_throughput_chart_plots_the_collector_series(planted: dict[str, Any]) -> None:
    data = chart_data(planted["reports"]["k-done"])

    throughput_axes = draw(data).axes[0]

    plotted = {line.get_label(): list(line.get_ydata()) for line in throughput_axes.lines}
    assert plotted == data["throughput"]["per_stage"]
