"""``batchline catalog``: import customers and publishers from JSON or CSV, and show them.

A catalog file is JSON (``{"customers": [...], "publishers": [...]}``) or CSV, one
kind per file: a header with ``customer_id`` holds customers (customer_id, name,
tier, suspended), one with ``domain`` holds publishers (list cells separated by
``|``). Every file is validated before anything is written; all of them are then
upserted in one transaction.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from pipeline.catalog import (
    Catalog,
    CatalogError,
    CustomerProfile,
    PublisherProfile,
    merge_catalogs,
    parse_catalog_csv,
    parse_catalog_json,
)
from pipeline.errors import DataError
from pipeline.settings import SettingsError, get_settings

catalog_app = typer.Typer(help="Customers and publishers (the catalog).", no_args_is_help=True)
console = Console()
errors = Console(stderr=True, soft_wrap=True)  # one error, one unbroken line


def _fail(message: str, code: int = 2) -> NoReturn:
    errors.print(f"[red]error:[/red] {message}", markup=True, highlight=False)
    raise typer.Exit(code)


def _is_json(path: Path, text: str) -> bool:
    if path.suffix.lower() in {".json", ".csv"}:
        return path.suffix.lower() == ".json"
    return text.lstrip().startswith("{")


def read_catalog_file(path: Path) -> Catalog:
    """Parse one catalog file: JSON (``.json``, or text starting with ``{``), else CSV.

    Raises:
        CatalogError: naming the file and the line or field that is wrong.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")  # tolerate the BOM spreadsheets write
    except UnicodeDecodeError as error:
        raise CatalogError(
            f"{path}: not UTF-8 text ({error.reason} at byte {error.start})"
        ) from None
    if not _is_json(path, text):
        return parse_catalog_csv(text, str(path))
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise CatalogError(f"{path}: not valid JSON: {error}") from None
    except RecursionError:
        raise CatalogError(f"{path}: not valid JSON: nested too deeply") from None
    return parse_catalog_json(data, str(path))


def read_catalog_files(paths: Sequence[Path]) -> Catalog:
    """Parse and join several catalog files; a key in two files is an error."""
    return merge_catalogs([(str(path), read_catalog_file(path)) for path in paths])


def _forget_cached(catalog: Catalog) -> None:
    """Drop the imported entries from the profile caches, so workers see the change now."""
    import redis

    from cache_warming.customers import forget_customers
    from cache_warming.publishers import CACHE_TTL_SECONDS, forget_publishers

    if not catalog.publishers and not catalog.customers:
        return
    try:
        if catalog.customers:
            forget_customers()
        forget_publishers(p.domain for p in catalog.publishers)
    except (redis.RedisError, SettingsError) as error:
        errors.print(
            f"note: cached profiles not dropped ({error});"
            f" workers see the change within {CACHE_TTL_SECONDS} s",
            markup=False,
            highlight=False,
        )


@catalog_app.command("import")
def import_catalog(
    files: Annotated[
        list[Path],
        typer.Argument(exists=True, dir_okay=False, help="JSON or CSV catalog files."),
    ],
) -> None:
    """Insert or update customers and publishers from FILES; nothing is written if any is wrong."""
    from ledger.catalog import upsert_catalog
    from ledger.db import transaction

    try:
        catalog = read_catalog_files(files)
        get_settings().require_database_url()
    except (CatalogError, SettingsError) as error:
        _fail(str(error))
    with transaction() as session:
        customers, publishers = upsert_catalog(session, catalog)
    _forget_cached(catalog)
    console.print(f"imported {customers} customers and {publishers} publishers", highlight=False)


def customers_table(customers: Sequence[CustomerProfile]) -> Table:
    """The catalog's customers as a table."""
    table = Table(title=f"{len(customers)} customers")
    for column in ("customer", "name", "tier", "suspended"):
        table.add_column(column)
    for c in customers:
        table.add_row(c.customer_id, c.name, str(c.tier), "yes" if c.suspended else "")
    return table


def publishers_table(publishers: Sequence[PublisherProfile]) -> Table:
    """The catalog's publishers as a table: languages, topics, bounds and what they refuse."""
    table = Table(title=f"{len(publishers)} publishers")
    for column in ("domain", "languages", "topics", "words", "links", "forbidden topics"):
        table.add_column(column)
    for p in publishers:
        table.add_row(
            p.domain,
            ", ".join(p.languages),
            ", ".join(p.topics),
            f"{p.min_words}-{p.max_words}",
            str(p.max_outbound_links),
            ", ".join(p.forbidden_topics),
        )
    return table


@catalog_app.command("show")
def show_catalog(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the catalog as JSON (importable again).")
    ] = False,
) -> None:
    """Show the stored customers and publishers."""
    from ledger.catalog import load_catalog
    from ledger.db import transaction

    try:
        get_settings().require_database_url()
        with transaction() as session:
            catalog = load_catalog(session)
    except SettingsError as error:
        _fail(str(error))
    except DataError as error:
        _fail(str(error), code=1)
    if as_json:
        print(catalog.model_dump_json(indent=2))
        return
    console.print(customers_table(catalog.customers))
    console.print(publishers_table(catalog.publishers))
