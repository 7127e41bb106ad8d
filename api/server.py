"""Run the API on uvicorn, and start it as a child process (tests, ``make demo --api``)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from cli.children import die_with_parent


def serve(host: str, port: int, log_level: str = "warning") -> None:
    """Serve the API until interrupted (one process; the routes use its thread pool)."""
    import uvicorn

    from api.app import create_app

    uvicorn.run(
        create_app(),
        host=host,
        port=port,
        log_level=log_level.lower(),
        # No stack traces or server banner leak out; errors are logged here.
        server_header=False,
        proxy_headers=False,
    )


def api_command(host: str, port: int) -> list[str]:
    """The command line of ``batchline api`` run with this interpreter."""
    return [sys.executable, "-m", "cli", "api", "--host", host, "--port", str(port)]


def spawn_api(
    host: str, port: int, *, env: Mapping[str, str], log_path: Path
) -> subprocess.Popen[bytes]:
    """Start ``batchline api`` as a child that is killed if this process dies."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen(
            api_command(host, port),
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent(),
            cwd=Path.cwd(),
        )


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until_alive(base: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    """Poll ``base``/healthz until it answers 200.

    Raises:
        RuntimeError: the process exited first.
        TimeoutError: no answer within ``timeout`` seconds.
    """
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the API exited with code {process.returncode}")
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"the API did not answer /healthz within {timeout}s")
