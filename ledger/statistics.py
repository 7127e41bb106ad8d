"""Fresh planner statistics for the tables a large submission grew (``ANALYZE``).

PostgreSQL plans every statement from the statistics ``ANALYZE`` leaves in
``pg_statistic``. A submission that adds many rows to a table makes those out of
date at once: a 100,000-order batch after a 10,000-order one. Autovacuum notices
it, but its launcher visits a database only once per ``autovacuum_naptime``
(1 minute by default), and until then every claim, queued mark and lineage
look-up of the new batch ran on plans made for the small table: 3 to 10 times
slower per call for the same blocks read, and half the batch's throughput for its
first 80 seconds (bench/NOTES.md, "C at 100,000: a minute of stale statistics").
So the submission analyzes those tables itself, when the batch alone grew one
past the line autovacuum's own analyze rule draws
(``autovacuum_analyze_threshold + autovacuum_analyze_scale_factor * rows``), and
only then: ``ANALYZE`` reads a sample of at most 30,000 rows per table (0.44 s
for four tables, these three among them, at 100,000 orders), which a small batch
should not pay for. The caller owns the transaction; run it after the batch's own
commit, so the sample sees the batch.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.orm import Session

#: The tables a submission adds one row per order to.
SUBMISSION_TABLES = ("items", "order_documents", "order_targets")
#: PostgreSQL's default ``autovacuum_analyze_threshold``. A submission that cannot pass
#: the analyze line with it, even into an empty table, skips the check (a transaction:
#: 1-25 ms of a high batch's wait for its first stage behind a backlog); under a lower
#: server setting a few dozen rows change no plan.
DEFAULT_ANALYZE_THRESHOLD = 50.0

# reltuples is -1 for a table never vacuumed or analyzed (PostgreSQL 14+): no rows known.
_ESTIMATES = text(
    """
    SELECT t.name, greatest(c.reltuples, 0),
           current_setting('autovacuum_analyze_threshold')::float8,
           current_setting('autovacuum_analyze_scale_factor')::float8
    FROM unnest(CAST(:names AS text[])) AS t(name)
    JOIN pg_class c ON c.oid = to_regclass(t.name)
    """
)


def past_autoanalyze_line(added: int, known_rows: float, threshold: float, scale: float) -> bool:
    """Whether ``added`` rows alone pass autovacuum's analyze line for a table of ``known_rows``."""
    return added > threshold + scale * known_rows


def worth_checking(added: int) -> bool:
    """Whether ``added`` rows could pass the analyze line under the default threshold."""
    return past_autoanalyze_line(added, 0.0, DEFAULT_ANALYZE_THRESHOLD, 0.0)


def stale_tables(
    session: Session, added: int, tables: Sequence[str] = SUBMISSION_TABLES
) -> list[str]:
    """Those of ``tables`` whose statistics ``added`` new rows alone made stale."""
    rows = session.execute(_ESTIMATES, {"names": list(tables)}).all()
    return [
        str(name)
        for name, known, threshold, scale in rows
        if past_autoanalyze_line(added, float(known), float(threshold), float(scale))
    ]


def analyze(session: Session, tables: Sequence[str]) -> None:
    """``ANALYZE`` ``tables`` (names from :data:`SUBMISSION_TABLES`, never from input).

    It waits for each table's lock as long as the transaction's ``lock_timeout``
    allows (the caller bounds it with ``ledger.db.short_lock_waits``).
    """
    unknown = set(tables) - set(SUBMISSION_TABLES)
    if unknown:
        raise ValueError(f"not a table this module analyzes: {sorted(unknown)}")
    if tables:
        session.execute(text(f"ANALYZE {', '.join(tables)}"))
