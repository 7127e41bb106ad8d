"""Render ``docs/configuration.md`` from the settings class, so the page never drifts.

``python -m cli.configuration_doc`` (or ``make docs``) rewrites the page;
``--check`` exits 1 when it is out of date, and ``tests/unit/test_configuration_doc.py``
fails then too. Every field of :class:`pipeline.settings.Settings` becomes one row:
environment variable, type, default, allowed values and meaning. The meaning is the
field's ``description`` if it has one, else the ``#:`` comment above the field, else
the entry for the field in :data:`DESCRIPTIONS` below.
"""

from __future__ import annotations

import ast
import inspect
import re
import sys
import textwrap
from enum import Enum
from pathlib import Path
from types import NoneType, UnionType
from typing import Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from pipeline.settings import Settings

DOC_PATH = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"

#: Meanings of the fields that carry neither a ``description`` nor a ``#:`` comment.
#: A description added in ``pipeline/settings.py`` takes precedence over an entry here.
DESCRIPTIONS: dict[str, str] = {
    "redis_prefix_batch": (
        "Prefix of every batchline key in Redis except the error buckets: progress hashes,"
        " locks, the publisher cache, slots, rate buckets (see `metrics/keys.py`)."
        " Queue names are not affected"
    ),
    "redis_prefix_metrics": (
        "Prefix of the hourly error buckets `metrics:errors:<YYYYMMDDHH>`"
        " (failed items by error class)"
    ),
    "batch_default_priority": "Priority of a submission that names none",
    "batch_cache_warm_threshold": (
        "A batch of at least this many orders warms the publisher-profile cache before it"
        " starts, unless `options.warm_cache` says otherwise"
    ),
    "batch_metrics_ttl_days": (
        "Days a progress hash and an hourly error bucket live, renewed on every write"
    ),
    "batch_max_items": "The most orders one batch may hold",
    "batch_output_dir": (
        "Where the filesystem publisher writes `<batch_id>/<order>.html` and"
        " `.receipt.json`. Relative to the worker's working directory; every worker must"
        " share it"
    ),
    "batch_lease_seconds": (
        "How long a claimed item stays reserved for its run; after that a sweep puts it"
        " back in the pool. Also the lease of a concurrency slot"
    ),
    "batch_task_soft_time_limit": (
        "Seconds. At this point a chunk keeps what is finished and hands the rest back"
        " for an immediate retry"
    ),
    "batch_task_time_limit": (
        "Seconds. The hard limit: the pool process running the chunk is killed"
    ),
    "batch_visibility_timeout": (
        "Seconds. After this the broker hands out an unacknowledged message again"
    ),
    "batch_sweep_interval_seconds": (
        "How often beat sends a sweep. A sweep not run within one interval expires"
    ),
    "batch_sweep_grace_seconds": (
        "How long a queued item must wait, with its lane's queue empty, before a sweep"
        " takes it back into the pool (its message was lost)"
    ),
    "batch_idempotency_ttl_hours": (
        "How long a delivery's idempotency key and receipt are remembered in"
        " `idempotency_keys`; sweeps delete expired rows"
    ),
    "celery_worker_max_memory_per_child": (
        "KiB. A pool process that has grown past this is replaced after its task. A"
        " process forked from the worker starts at about the parent's RSS (the language"
        " model and numpy load before the fork, about 190 MiB): keep this well above it"
    ),
    "batch_anchor_window_days": (
        "How far back preflight counts a customer's anchors for one target"
    ),
    "batch_exact_anchor_max_share": (
        "The largest share of exact-match anchors for one target within"
        " `BATCH_ANCHOR_WINDOW_DAYS`; judged from 3 orders on"
    ),
    "batch_duplicate_window_days": (
        "Preflight refuses an order whose customer, target URL and publisher match an"
        " earlier order created within this many days"
    ),
    "qc_max_rewrites": (
        "How often QC may send one order back to the writer; `0` rejects at the first failed check"
    ),
    "writer_backend": (
        "`offline` (deterministic, no service) or `openai` (an OpenAI-compatible"
        " chat-completions service)"
    ),
    "writer_url": (
        "API base of the `openai` writer, e.g. `http://localhost:8000/v1`;"
        " `/chat/completions` is appended. Must be http(s). Required with `openai`,"
        " checked when the writer is first used"
    ),
    "writer_api_key": "Sent as `Authorization: Bearer …` when set",
    "writer_model": "The model name sent with each request of the `openai` writer",
    "writer_timeout_seconds": "Timeout of each request to the writer service (httpx)",
    "writer_max_retries": (
        "Retries after the first try within one writing run (429, 408, 5xx, timeouts,"
        " connection errors)"
    ),
    "delivery_backend": (
        "`filesystem` (pages and receipts under `BATCH_OUTPUT_DIR`) or `webhook`"
        " (POST to each publisher's `webhook_url`)"
    ),
    "delivery_timeout_seconds": "Timeout of each webhook request (httpx)",
    "log_level": (
        "Worker log level, also passed to `batchline worker --loglevel`. The CLI logs"
        " below `WARNING` only with `-v`"
    ),
    "log_format": "`console` (key=value text) or `json` (one object per line), on stderr",
    "batch_cap_global": (
        "The most calls of a stage of `BATCH_CAPPED_STAGES` at once, across all"
        " workers; `0` = no cap. Slots are taken at claim: queued work holds none"
    ),
    "batch_cap_per_customer": "The same, per customer; `0` = no cap",
    "batch_cap_per_publisher": (
        "The most calls of a stage of `BATCH_PUBLISHER_CAPPED_STAGES` at once per"
        " publisher domain; `0` = no cap"
    ),
    "batch_rate_limits": (
        "Limits shared by every worker: comma-separated"
        " `service=RATE/UNIT[:BURST][:conc=N][:per-key]` (UNIT `s`, `min`, `h`: a token"
        " bucket; `day`: a quota per UTC day; `conc=N`: calls in flight at once);"
        " services `writer`, `delivery`, `preflight`; empty = no limits. See"
        " [Rate limits](architecture.md#rate-limits)"
    ),
    "batch_rate_limit_max_wait_seconds": (
        "How long in total a call may sleep for a token; beyond that the item is"
        " deferred with `RateLimited`, without spending an attempt"
    ),
    "batch_stage_handlers": (
        "`noop` makes every stage do only its bookkeeping (claim, lease, stored output,"
        " state change, progress, feed), as the benchmark's scenario C measures; orders"
        " then end `DELIVERED` with nothing written or published"
    ),
}

_CHUNK_FIELD = re.compile(r"batch_chunk_(?P<stage>[a-z_]+)_(?P<kind>optimal|max)")

#: Rules between two or more settings, checked at start-up (``Settings`` validators).
RULES = (
    "`BATCH_TASK_SOFT_TIME_LIMIT` < `BATCH_TASK_TIME_LIMIT`.",
    "`BATCH_VISIBILITY_TIMEOUT` > the largest stage time limit (`BATCH_TASK_TIME_LIMIT`, or"
    " a scheduled stage's guide limit: writing 7200 s), so a running chunk is never handed"
    " out twice.",
    "`BATCH_LEASE_SECONDS` > the largest stage time limit, so a lease never ends under a"
    " running chunk.",
    "`BATCH_VISIBILITY_TIMEOUT` and `BATCH_LEASE_SECONDS` > writing's soft time limit +"
    " `WRITER_TIMEOUT_SECONDS`, and > delivery's + `DELIVERY_TIMEOUT_SECONDS`: a call may"
    " start just before the soft limit and run until its HTTP timeout, and a killed worker"
    " cannot end it, so its concurrency slot must stay taken until then (the defaults:"
    " 540 + 60 = 600 s).",
    "Each `BATCH_SCHEDULE_<STAGE>` parses, names no time twice, and its `_WINDOW` is no"
    " longer than the gap between two runs; `BATCH_SCHEDULE_*` names only known stages;"
    " `BATCH_SCHEDULE_LANES` names only lanes ([schedules](schedules.md)).",
    "Each stage's `BATCH_CHUNK_<STAGE>_OPTIMAL` ≤ `BATCH_CHUNK_<STAGE>_MAX`.",
    "`BATCH_CAPPED_STAGES` and `BATCH_PUBLISHER_CAPPED_STAGES` name only known stages.",
    "Every `BATCH_RATE_LIMITS` entry parses; a bad one is named in the error.",
)


def comment_descriptions(cls: type) -> dict[str, str]:
    """Return the ``#:`` comment lines directly above each annotated field of ``cls``."""
    source = textwrap.dedent(inspect.getsource(cls))
    lines = source.splitlines()
    found: dict[str, str] = {}
    for node in ast.parse(source).body[0].body:  # type: ignore[attr-defined]
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        above: list[str] = []
        index = node.lineno - 2  # the line above, 0-based
        while index >= 0 and lines[index].strip().startswith("#:"):
            above.insert(0, lines[index].strip().removeprefix("#:").strip())
            index -= 1
        if above:
            found[node.target.id] = " ".join(above)
    return found


def describe(name: str, field: FieldInfo, comments: dict[str, str]) -> str:
    """The meaning of one field: its description, its ``#:`` comment, or the table's."""
    text = field.description or comments.get(name) or DESCRIPTIONS.get(name)
    if text is None and (match := _CHUNK_FIELD.fullmatch(name)):
        stage = match["stage"]
        if match["kind"] == "optimal":
            text = f"Items per {stage} chunk: the size the feeder cuts chunks to"
        else:
            text = f"Upper bound of `{env_name(name).removesuffix('_MAX')}_OPTIMAL`"
    text = (text or "(not described yet)").strip().removesuffix(".")
    return text[:1].upper() + text[1:]


def env_name(name: str) -> str:
    """The environment variable a field is read from."""
    return f"{Settings.model_config.get('env_prefix', '')}{name}".upper()


def type_name(annotation: Any) -> str:
    """A short, readable name for a field's type."""
    origin = get_origin(annotation)
    if origin is Literal:
        return " or ".join(f"`{value}`" for value in get_args(annotation))
    if origin in (Union, UnionType):
        parts = [type_name(a) for a in get_args(annotation) if a is not NoneType]
        optional = NoneType in get_args(annotation)
        return " or ".join(parts) + (", optional" if optional else "")
    if isinstance(annotation, type):
        return {"str": "text", "int": "integer", "float": "number", "Path": "path"}.get(
            annotation.__name__, annotation.__name__
        )
    return str(annotation)


def default_text(field: FieldInfo) -> str:
    """The default as an operator would type it, or ``unset``."""
    value = field.default
    if value is PydanticUndefined:
        return "required"
    if value is None:
        return "unset"
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, bool):
        value = str(value).lower()
    if isinstance(value, float):
        value = f"{value:g}"
    return f"`{value}`" if str(value) else '`""` (empty)'


def constraints(field: FieldInfo) -> str:
    """Bounds from the field's metadata (``ge``, ``gt``, ``le``, ``lt``, lengths)."""
    parts: list[str] = []
    for item in field.metadata:
        for kind, symbol in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<")):
            bound = getattr(item, kind, None)
            if isinstance(item, annotated_types.BaseMetadata) and bound is not None:
                parts.append(f"{symbol} {_number(bound)}")
        if isinstance(item, annotated_types.MinLen) and item.min_length:
            parts.append("not empty" if item.min_length == 1 else f"≥ {item.min_length} chars")
        if isinstance(item, annotated_types.MaxLen):
            parts.append(f"≤ {item.max_length} chars")
    return ", ".join(parts)


def _number(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:g}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render() -> str:
    """The whole page, as ``docs/configuration.md`` must hold it."""
    comments = comment_descriptions(Settings)
    config = Settings.model_config
    case = "case-sensitive" if config.get("case_sensitive") else "case-insensitive"
    extra = "ignored" if config.get("extra", "ignore") == "ignore" else "refused"
    rows = [
        "| variable | type | default | allowed | meaning |",
        "|---|---|---|---|---|",
    ]
    for name, field in Settings.model_fields.items():
        cells = (
            f"`{env_name(name)}`",
            type_name(field.annotation),
            default_text(field),
            constraints(field) or "\N{EN DASH}",
            describe(name, field, comments),
        )
        rows.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    rules = [f"- {rule}" for rule in RULES]
    return "\n".join(
        [
            "# Configuration",
            "",
            "<!-- Generated from pipeline.settings.Settings by `python -m"
            " cli.configuration_doc` (`make docs`). Do not edit by hand. -->",
            "",
            "Every setting is an environment variable, declared in one pydantic-settings",
            f"class, `pipeline.settings.Settings`. Names are {case}; unknown names are",
            f"{extra}. A bad value, or a broken rule between two values, stops start-up",
            "with a message naming the variable, for example",
            "`invalid configuration: BATCH_VISIBILITY_TIMEOUT must exceed BATCH_TASK_TIME_LIMIT`,",
            "and every CLI command then exits with code 2.",
            "`deploy/batchline.env.example` lists the settings with their defaults.",
            "",
            *rows,
            "",
            "## Rules between settings",
            "",
            *rules,
            "",
            "Where each setting acts is described in [the architecture](architecture.md)",
            "and [operating batchline](operating.md).",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    """Write the page, or with ``--check`` report whether it is up to date."""
    args = sys.argv[1:] if argv is None else argv
    text = render()
    if "--check" in args:
        current = DOC_PATH.read_text(encoding="utf-8") if DOC_PATH.exists() else ""
        if current != text:
            print(f"{DOC_PATH} is out of date: run python -m cli.configuration_doc")
            return 1
        return 0
    DOC_PATH.write_text(text, encoding="utf-8")
    print(f"wrote {DOC_PATH}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
