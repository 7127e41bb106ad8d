"""structlog set-up: one call, used by the CLI and by every worker process."""

from __future__ import annotations

import logging
import sys

import structlog


def configure_logging(level: str = "INFO", fmt: str = "console") -> None:
    """Send structured logs to stderr at ``level``, as key=value text or JSON lines."""
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )


def _stderr_logger(*_: object) -> structlog.PrintLogger:
    # The stderr of the moment, not the one at configure time: a caller that swaps
    # sys.stderr for a while (click's CliRunner, pytest's capture) and closes it after
    # must not leave every later log line writing into a closed file.
    return structlog.PrintLogger(file=sys.stderr)
