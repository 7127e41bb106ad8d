"""A batch report for people who would rather look than read: charts and one HTML page.

Everything drawn comes from ``BatchMetricsCollector.get_performance_report``; this
module only draws it. Four charts on one figure: successful runs over time per
stage, stage latency (p50/p95/max), waiting time in the pool before each stage
(p50/p95/max), and failures by category and code. The HTML page adds tables of
the time calls slept for call slots and rate-limit tokens, and of retries and
deferrals by cause. The PNG carries the figures it
was drawn from in its ``batchline-report`` text chunk; the HTML page embeds the
PNG (``data:`` URI) and the whole report (``<script type="application/json">``), so
it is one self-contained file.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any, Final

#: The PNG text chunk holding the charted figures.
PNG_KEY: Final = "batchline-report"
#: The ``id`` of the HTML page's embedded JSON report.
HTML_DATA_ID: Final = "batchline-report-data"


def chart_data(report: dict[str, Any]) -> dict[str, Any]:
    """The figures the charts draw, taken from a performance report as they are."""
    failures = report["failures"]
    return {
        "batch_id": report["batch"]["batch_id"],
        "throughput": report["throughput"],
        "latency_ms": {
            stage: [s["p50_ms"], s["p95_ms"], s["max_ms"]] for stage, s in report["stages"].items()
        },
        "waits_s": {
            stage: [w["p50_s"], w["p95_s"], w["max_s"]] for stage, w in report["waits"].items()
        },
        "failures_by_category": failures["by_category"],
        "failures_by_code": failures["by_code"],
    }


def draw(data: dict[str, Any]) -> Any:
    """A matplotlib figure of :func:`chart_data`'s four charts (headless backend)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(12, 8), layout="constrained")
    axes = figure.subplots(2, 2)
    figure.suptitle(f"batch {data['batch_id']}")
    _throughput(axes[0][0], data["throughput"])
    _bars(axes[0][1], data["latency_ms"], "stage latency (ms)")
    _bars(axes[1][0], data["waits_s"], "waiting in the pool before the stage (s)")
    _failures(axes[1][1], data["failures_by_category"], data["failures_by_code"])
    return figure


def _throughput(ax: Any, throughput: dict[str, Any]) -> None:
    step = throughput["bin_seconds"] or 1.0
    for stage, counts in throughput["per_stage"].items():
        ax.plot([i * step for i in range(len(counts))], counts, marker=".", label=stage)
    ax.set_title(f"successful runs per {step:g} s since submission")
    ax.set_xlabel("seconds since submission")
    if throughput["per_stage"]:
        ax.legend()


def _bars(ax: Any, values: dict[str, list[float]], title: str) -> None:
    stages = list(values)
    width = 0.27
    for offset, (label, index) in enumerate((("p50", 0), ("p95", 1), ("max", 2))):
        ax.bar(
            [i + (offset - 1) * width for i in range(len(stages))],
            [values[s][index] for s in stages],
            width,
            label=label,
        )
    ax.set_xticks(range(len(stages)), stages)
    ax.set_title(title)
    if stages:
        ax.legend()


def _failures(ax: Any, by_category: dict[str, int], by_code: dict[str, int]) -> None:
    labels = [f"category {k}" for k in by_category] + [f"code {k}" for k in by_code]
    counts = list(by_category.values()) + list(by_code.values())
    ax.barh(labels, counts, color="tab:red")
    ax.invert_yaxis()
    ax.set_title("failed orders" if labels else "failed orders: none")


def png_bytes(report: dict[str, Any]) -> bytes:
    """The report's charts as one PNG, with the charted figures in its text chunk."""
    data = chart_data(report)
    buffer = io.BytesIO()
    draw(data).savefig(buffer, format="png", dpi=100, metadata={PNG_KEY: json.dumps(data)})
    return buffer.getvalue()


def html_page(report: dict[str, Any]) -> str:
    """One self-contained HTML page: the charts, the tables, and the report as JSON."""
    image = base64.b64encode(png_bytes(report)).decode("ascii")
    batch = report["batch"]
    # "</" cannot end the JSON's <script> early once escaped.
    embedded = json.dumps(report).replace("</", "<\\/")
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>batch {html.escape(batch['batch_id'])}</title>",
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;"
            "margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:right}"
            "th:first-child,td:first-child{text-align:left}</style></head><body>",
            f"<h1>batch {html.escape(batch['batch_id'])}</h1>",
            _table(list(_BATCH_COLUMNS), [[batch[k] for k in _BATCH_COLUMNS]], "batch"),
            _table(["state", "orders"], list(batch["states"].items()), "states"),
            f'<img alt="charts of batch {html.escape(batch["batch_id"])}" '
            f'src="data:image/png;base64,{image}">',
            _table(
                ["stage", *_STAGE_COLUMNS],
                [[s, *(f[c] for c in _STAGE_COLUMNS)] for s, f in report["stages"].items()],
                "stages",
            ),
            _table(
                ["stage", *_WAIT_COLUMNS],
                [[s, *(w[c] for c in _WAIT_COLUMNS)] for s, w in report["waits"].items()],
                "waits",
            ),
            _table(
                ["stage", *_LIMIT_WAIT_COLUMNS],
                [
                    [s, *(w.get(c, 0) for c in _LIMIT_WAIT_COLUMNS)]
                    for s, w in report["waits"].items()
                ],
                "limit-waits",
            ),
            _table(
                ["stage", "code", "retries"],
                _per_stage_rows(report.get("retries", {})),
                "retries",
            ),
            _table(
                ["stage", "cause", "deferrals"],
                _per_stage_rows(report.get("deferrals", {})),
                "deferrals",
            ),
            _table(
                ["order_id", "state", "elapsed_s", "working_s", "runs"],
                [list(o.values()) for o in report["slowest_orders"]],
                "slowest",
            ),
            _table(
                ["stage", "error_class", "code", "count", "order_id", "reason"],
                [list(r.values()) for r in report["failures"]["top_reasons"]],
                "failures",
            ),
            f'<script type="application/json" id="{HTML_DATA_ID}">{embedded}</script>',
            "</body></html>",
        ]
    )


_BATCH_COLUMNS: Final = ("status", "priority", "total", "elapsed_s", "submitted_at", "finalized_at")
_STAGE_COLUMNS: Final = ("runs", "ok", "failed", "rewrites", "p50_ms", "p95_ms", "max_ms")
_WAIT_COLUMNS: Final = ("runs", "p50_s", "p95_s", "max_s", "total_s")
_LIMIT_WAIT_COLUMNS: Final = ("slot_waits", "slot_wait_ms", "rate_waits", "rate_wait_ms")


def _per_stage_rows(grouped: dict[str, Any]) -> list[list[Any]]:
    """``[stage, code or cause, count]`` rows of a report's ``retries`` or ``deferrals``."""
    return [
        [stage, name, count]
        for stage, counts in grouped.get("by_stage", {}).items()
        for name, count in counts.items()
    ]


def _table(header: list[str], rows: list[Any], name: str) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in row) + "</tr>"
        for row in rows
    )
    return f'<h2>{name}</h2><table id="{name}"><tr>{head}</tr>{body}</table>'


def write_report(report: dict[str, Any], out: Path) -> Path:
    """Write ``out`` as a PNG or an HTML page, chosen by its suffix.

    Raises:
        ValueError: the suffix is neither ``.png`` nor ``.html``.
    """
    suffix = out.suffix.lower()
    if suffix == ".png":
        out.write_bytes(png_bytes(report))
    elif suffix in (".html", ".htm"):
        out.write_text(html_page(report), encoding="utf-8")
    else:
        raise ValueError(f"--out {out}: the file must end in .html or .png")
    return out
