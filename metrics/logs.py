"""structlog set-up: one call for the CLI and every worker, one more for stdlib loggers.

``configure_logging`` renders batchline's own structlog events. ``route_stdlib_logging``
sends what Celery, kombu and every other stdlib logger say through the same
processors and renderer (structlog's ``ProcessorFormatter``), so a worker started
with ``LOG_FORMAT=json`` writes one stream of JSON objects, each line carrying the
ids the running task bound (``metrics.task_context``).
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

import structlog
from structlog.types import EventDict, Processor

#: The stdlib handler ``route_stdlib_logging`` installs (found again to be replaced).
_HANDLER_NAME = "batchline-structlog"
#: Libraries that log every request at INFO: httpx says "HTTP Request: POST … 200 OK"
#: for each writer call and webhook, two of every three lines of a busy worker's log
#: and about 2 % of an I/O worker's interpreter time (py-spy, bench/NOTES.md). Their
#: warnings stay; their INFO lines show only when the worker logs at DEBUG.
_CHATTY_LOGGERS = ("httpx",)


def _shared_processors() -> list[Processor]:
    """What every line gets, structlog's or stdlib's: the bound ids, level and time."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def _renderer(fmt: str) -> list[Processor]:
    if fmt == "json":
        # A traceback becomes one string field: a JSON line stays one line.
        return [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
    return [structlog.dev.ConsoleRenderer(colors=False)]


def configure_logging(level: str = "INFO", fmt: str = "console") -> None:
    """Send structured logs to stderr at ``level``, as key=value text or JSON lines."""
    structlog.configure(
        processors=[*_shared_processors(), *_renderer(fmt)],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )


def route_stdlib_logging(level: str | int = "WARNING", fmt: str = "console") -> None:
    """Render every stdlib log record (Celery's, kombu's) like batchline's own lines.

    Replaces the root logger's handlers with one stderr handler whose formatter is
    structlog's ``ProcessorFormatter``; records below ``level`` are dropped, and so are
    the per-request INFO lines of :data:`_CHATTY_LOGGERS` unless ``level`` is DEBUG.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                *_shared_processors(),
                structlog.stdlib.add_logger_name,
                _celery_task_fields,
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                *_renderer(fmt),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level if isinstance(level, int) else logging.getLevelName(level.upper()))
    chatty = logging.NOTSET if root.level <= logging.DEBUG else logging.WARNING
    for name in _CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(chatty)


def say_as_json(message: str, file: TextIO | None = None) -> None:
    """Write a notice Celery prints from a signal handler as one JSON line.

    Celery's worker says "worker: Warm shutdown (MainProcess)" and the like with a
    plain ``print`` (logging is not safe inside a signal handler); in a JSON stream
    that would be the one line a parser chokes on. Same fields as a logged line.
    """
    stamp = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    line = {"event": message, "level": "warning", "logger": "celery.apps.worker"}
    stream = file or sys.__stderr__
    if stream is None:
        return
    try:
        stream.write(json.dumps({**line, "timestamp": stamp}) + "\n")
        stream.flush()
    except (OSError, ValueError):  # a closed stream at exit: nothing to tell anyone
        pass


def _celery_task_fields(_: Any, __: str, event: EventDict) -> EventDict:
    """Lift the task id and name out of Celery's own messages about a task.

    Celery logs "Task <name>[<id>] received" (and retried, failed) with the values
    also in the record's ``data`` attribute; a line from the worker's main process
    (no task context bound there) can then be found by ``task_id`` like the lines of
    the task itself.
    """
    record = event.get("_record")
    values = getattr(record, "data", None)
    if isinstance(values, dict) and "id" in values and "name" in values:
        event.setdefault("task_id", str(values["id"]))
        event.setdefault("task", str(values["name"]))
    return event


def _stderr_logger(*_: object) -> structlog.PrintLogger:
    # The stderr of the moment, not the one at configure time: a caller that swaps
    # sys.stderr for a while (click's CliRunner, pytest's capture) and closes it after
    # must not leave every later log line writing into a closed file.
    return structlog.PrintLogger(file=sys.stderr)
