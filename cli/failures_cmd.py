"""``batchline failures ID``: what went wrong in a batch, and what to do about it.

The report is ``analyze_batch_failures``'s (``recovery.analysis``): tables of the
failures by category and by reason code, the patterns they show, the
recommendations with their commands, and the failed orders; ``--json`` prints the
report itself.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Annotated, Any, Final, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

console = Console()
errors = Console(stderr=True, soft_wrap=True)  # one error, one unbroken line

#: Failed orders shown as a table; ``--json`` lists up to the analysis' own cap.
SHOWN_ORDERS: Final = 50


def _fail(message: str, code: int = 2) -> NoReturn:
    errors.print(f"[red]error:[/red] {escape(message)}", highlight=False)
    raise typer.Exit(code)


def failures(
    batch_id: Annotated[str, typer.Argument(help="A batch (original or recovery).")],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the whole report as JSON.")
    ] = False,
) -> None:
    """Analyse a batch's failures: by category and code, patterns, advice, failed orders."""
    from pipeline.errors import UnknownBatch
    from recovery.analysis import analyze_batch_failures

    try:
        report = analyze_batch_failures(batch_id)
    except UnknownBatch as error:
        _fail(str(error))
    if as_json:
        print(json.dumps(report, indent=2))
        return
    for table in failure_tables(report):
        console.print(table)


def failure_tables(report: dict[str, Any]) -> Iterator[Table]:
    """The report as tables, the empty ones left out."""
    yield _summary_table(report)
    if report["total_failures"]:
        yield _category_table(report)
        yield _code_table(report)
    if report["patterns"]:
        yield _patterns_table(report["patterns"])
    if report["recommendations"]:
        yield _recommendations_table(report["recommendations"])
    if report["failed_documents"]:
        yield _orders_table(report)


def _summary_table(report: dict[str, Any]) -> Table:
    table = Table(title=f"failures of batch {report['batch_id']}", show_header=False)
    table.add_row("orders", str(report["total_orders"]))
    table.add_row("failed", f"{report['total_failures']} ({report['error_rate']:g} %)")
    table.add_row("recoverable", str(report["recoverable_count"]))
    table.add_row("manual", str(report["manual_count"]))
    table.add_row("permanent", str(report["permanent_count"]))
    for key in ("by_stage", "by_publisher", "by_customer"):
        table.add_row(key.replace("_", " "), _counts(report[key]))
    if report["problematic_items"]:
        table.add_row("failed more than once", _problematic(report["problematic_items"]))
    return table


def _counts(counts: dict[str, int], shown: int = 5) -> str:
    listed = [f"{key} {n}" for key, n in list(counts.items())[:shown]]
    more = len(counts) - shown
    return ", ".join(listed) + (f" (+{more} more)" if more > 0 else "") or "-"


def _problematic(items: list[dict[str, Any]]) -> str:
    return ", ".join(f"{i['order_id']} ({i['failures']}x)" for i in items[:5])


def _category_table(report: dict[str, Any]) -> Table:
    table = Table(title="by category")
    table.add_column("category")
    table.add_column("failures", justify="right")
    for category, count in report["errors_by_category"].items():
        table.add_row(category, str(count))
    return table


def _code_table(report: dict[str, Any]) -> Table:
    table = Table(title="by reason")
    for column in ("code", "failures", "error classes"):
        table.add_column(column, justify="right" if column == "failures" else "left")
    classes = _classes_by_code(report["failed_documents"])
    for code, count in report["errors_by_code"].items():
        table.add_row(code, str(count), ", ".join(sorted(classes.get(code, ()))))
    return table


def _classes_by_code(documents: list[dict[str, Any]]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for document in documents:
        found.setdefault(document["code"], set()).add(document["error_class"])
    return found


def _patterns_table(patterns: list[dict[str, Any]]) -> Table:
    table = Table(title="patterns")
    for column in ("pattern", "what the failures share"):
        table.add_column(column)
    for pattern in patterns:
        table.add_row(pattern["kind"], escape(pattern["summary"]))
    return table


def _recommendations_table(recommendations: list[dict[str, Any]]) -> Table:
    table = Table(title="recommendations")
    table.add_column("advice")
    table.add_column("why")
    table.add_column("command", no_wrap=True)  # whole, so it can be copied
    for made in recommendations:
        table.add_row(made["kind"], escape(made["message"]), escape(made["command"]))
    return table


def _orders_table(report: dict[str, Any]) -> Table:
    documents = report["failed_documents"][:SHOWN_ORDERS]
    title = f"failed orders ({len(documents)} of {report['failed_documents_total']})"
    table = Table(title=title)
    for column in ("order", "stage", "category", "code", "tries", "last good", "reason"):
        table.add_column(column)
    for d in documents:
        table.add_row(
            d["order_id"],
            d["stage"],
            d["category"],
            d["code"],
            str(d["attempts"]),
            d["last_good_stage"] or "-",
            escape(d["reason"][:80]),
        )
    return table
