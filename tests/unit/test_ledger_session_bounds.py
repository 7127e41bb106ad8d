"""Every ledger connection carries its lock, idle-in-transaction and keepalive bounds."""

from __future__ import annotations

import pytest

from ledger.db import connect_args
from pipeline.settings import Settings, SettingsError, get_settings


def test_connect_args_bound_lock_waits_idle_transactions_and_dead_peers() -> None:
    settings = Settings(
        batch_db_lock_timeout_ms=1500,
        batch_db_idle_in_transaction_timeout_s=45,
        batch_db_keepalive_idle_s=30,
    )

    args = connect_args(settings, pid=4321)

    assert args["options"].split() == [
        "-c", "lock_timeout=1500ms",
        "-c", "idle_in_transaction_session_timeout=45s",
        "-c", "tcp_keepalives_idle=30",
        "-c", "tcp_keepalives_interval=10",
        "-c", "tcp_keepalives_count=3",
    ]  # fmt: skip
    assert (args["keepalives"], args["keepalives_idle"], args["keepalives_interval"]) == (1, 30, 10)
    assert args["application_name"] == "batchline/4321"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("BATCH_DB_LOCK_TIMEOUT_MS", "0"),
        ("BATCH_SWEEP_LOCK_TIMEOUT_MS", "10"),
        ("BATCH_DB_IDLE_IN_TRANSACTION_TIMEOUT_S", "1"),
        ("BATCH_DB_KEEPALIVE_IDLE_S", "0"),
    ],
)
def test_unbounded_values_are_refused(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    get_settings.cache_clear()
    try:
        with pytest.raises(SettingsError, match=variable):
            get_settings()
    finally:
        monkeypatch.delenv(variable)
        get_settings.cache_clear()
