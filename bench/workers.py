"""Worker processes for one scenario: start, wait until ready, sample memory, stop.

Also :func:`pause` / :func:`resume`, which stop and restart consumption of
queues on running workers, so a scenario can publish everything with nothing
consuming and then time consumption alone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import psutil
from celery import Celery

from bench.services import BenchEnv
from cli.children import die_with_parent

_REPO_ROOT = Path(__file__).resolve().parents[1]
_SAMPLE_INTERVAL_S = 0.2
_STOP_TIMEOUT_S = 10.0
_MIB = 2**20
_CONTROL_TIMEOUT_S = 5.0


class WorkerError(RuntimeError):
    """A worker exited early, did not answer, or refused a control command."""


def _tree_rss(process: psutil.Process) -> list[int]:
    """RSS in bytes of ``process`` and all its descendants (those still alive)."""
    try:
        members = [process, *process.children(recursive=True)]
    except psutil.Error:
        return []
    sizes = []
    for member in members:
        try:
            sizes.append(member.memory_info().rss)
        except psutil.Error:  # exited between listing and reading: it holds nothing now
            continue
    return sizes


class _RssSampler(threading.Thread):
    """Samples the process trees every 0.2 s and keeps the peaks."""

    def __init__(self, pids: Sequence[int]) -> None:
        super().__init__(name="bench-rss-sampler", daemon=True)
        self._roots = [psutil.Process(pid) for pid in pids]
        self._stopped = threading.Event()
        self.peak_total = 0
        self.peak_single = 0

    def sample(self) -> None:
        sizes = [size for root in self._roots for size in _tree_rss(root)]
        if sizes:
            self.peak_total = max(self.peak_total, sum(sizes))
            self.peak_single = max(self.peak_single, max(sizes))

    def run(self) -> None:
        while not self._stopped.wait(_SAMPLE_INTERVAL_S):
            self.sample()

    def stop(self) -> None:
        self._stopped.set()
        self.join()


class WorkerGroup:
    """Worker processes started together, with their memory sampled until they stop.

    Use as a context manager (starts on enter, stops on exit) or call
    :meth:`start` and :meth:`stop`. Each process's output goes to
    ``<log_dir>/<name>-<n>.log``.
    """

    def __init__(
        self,
        commands: Sequence[Sequence[str]],
        bench: BenchEnv,
        *,
        name: str = "workers",
        env: Mapping[str, str] | None = None,
    ) -> None:
        """Prepare (not start) one process per command line.

        Args:
            commands: full command lines, e.g. ``[sys.executable, "-m", "celery", ...]``.
            bench: the session; its variables are exported to every process.
            name: prefix of the log files.
            env: extra variables for this group only (override ``bench.env``).
        """
        self._commands = [list(command) for command in commands]
        self._env = {**os.environ, **bench.env, **(env or {})}
        self._log_dir = bench.log_dir
        self._name = name
        self.processes: list[subprocess.Popen[bytes]] = []
        self._sampler: _RssSampler | None = None

    def log_path(self, index: int) -> Path:
        """Log file of the ``index``-th process."""
        return self._log_dir / f"{self._name}-{index}.log"

    def start(self) -> None:
        """Start every process (killed if this process dies) and the RSS sampler."""
        self._log_dir.mkdir(parents=True, exist_ok=True)
        for index, command in enumerate(self._commands):
            with self.log_path(index).open("ab") as log:
                self.processes.append(
                    subprocess.Popen(
                        command,
                        env=self._env,
                        cwd=_REPO_ROOT,
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        preexec_fn=die_with_parent(),
                    )
                )
        self._sampler = _RssSampler([process.pid for process in self.processes])
        self._sampler.start()

    def wait_ready(self, app: Celery, count: int, timeout: float = 60) -> None:
        """Wait until ``count`` workers answer ``app.control.ping``.

        Every worker on the broker answers, so with several groups running,
        ``count`` is the total expected, not this group's share.

        Raises:
            WorkerError: a process exited, or fewer answered within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            if len(app.control.ping(timeout=0.5, limit=count)) >= count:
                return
        raise WorkerError(f"{count} worker(s) did not answer ping within {timeout:.0f} s")

    def _check_alive(self) -> None:
        for index, process in enumerate(self.processes):
            if process.poll() is not None:
                tail = self.log_path(index).read_text(errors="replace").splitlines()[-20:]
                raise WorkerError(
                    f"worker {self._name}-{index} exited with {process.returncode}; its log:\n"
                    + "\n".join(tail)
                )

    def peak_rss_mb(self) -> float:
        """Peak, over the samples so far, of the summed RSS of every process tree (MiB).

        Prefork children share their parent's pages copy-on-write and RSS counts
        shared pages in every process, so this sum overstates the memory used.
        """
        return self._sampler.peak_total / _MIB if self._sampler else 0.0

    def peak_rss_per_process_mb(self) -> float:
        """Largest RSS of any single process of the group seen so far (MiB)."""
        return self._sampler.peak_single / _MIB if self._sampler else 0.0

    def stop(self) -> None:
        """SIGTERM every process (a warm shutdown), SIGKILL after 10 s, then their children."""
        if self._sampler is not None and self._sampler.is_alive():
            self._sampler.sample()  # one last look: a short run may fit between two ticks
            self._sampler.stop()
        children = self._children()
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for child in children:  # pool processes orphaned by a killed parent
            try:
                child.kill()
            except psutil.Error:
                continue

    def _children(self) -> list[psutil.Process]:
        found: list[psutil.Process] = []
        for process in self.processes:
            try:
                found.extend(psutil.Process(process.pid).children(recursive=True))
            except psutil.Error:
                continue
        return found

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


def _check_replies(replies: list[dict[str, Any]], workers: int, command: str, queue: str) -> None:
    """Raise unless ``workers`` workers answered ``command`` and none reported an error."""
    errors = [reply for reply in replies for answer in reply.values() if "error" in answer]
    if len(replies) < workers or errors:
        raise WorkerError(
            f"{command} {queue}: {len(replies)} of {workers} worker(s) answered; errors: {errors}"
        )


def pause(app: Celery, queues: Sequence[str], *, workers: int = 1) -> None:
    """Make running workers stop consuming ``queues`` (``cancel_consumer``).

    Verified with kombu 5.7's Redis transport: after the reply nothing more is
    taken from the queue (messages already reserved still run). Messages
    published meanwhile wait in Redis.

    Args:
        app: the app whose workers consume ``queues``.
        queues: queue names.
        workers: how many workers must confirm; the call returns as soon as they have.

    Raises:
        WorkerError: fewer workers confirmed within 5 s, or one reported an error.
    """
    for queue in queues:
        replies = app.control.cancel_consumer(
            queue, reply=True, limit=workers, timeout=_CONTROL_TIMEOUT_S
        )
        _check_replies(replies, workers, "cancel_consumer", queue)


def resume(app: Celery, queues: Sequence[str], *, workers: int = 1) -> None:
    """Make paused workers consume ``queues`` again (``add_consumer``).

    Returns as soon as ``workers`` workers confirmed (``limit``), not after the
    full reply timeout, so a caller may start its clock just before calling.
    With several queues, consumption of the first starts before the others resume.

    Raises:
        WorkerError: fewer workers confirmed within 5 s, or one reported an error.
    """
    for queue in queues:
        replies = app.control.add_consumer(
            queue, reply=True, limit=workers, timeout=_CONTROL_TIMEOUT_S
        )
        _check_replies(replies, workers, "add_consumer", queue)
