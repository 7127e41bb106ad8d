"""``batchline flower``: Flower on this app's broker, never open to everyone by mistake.

Flower serves no login of its own: without ``FLOWER_BASIC_AUTH`` anyone who reaches
its port reads every task's arguments and results and may revoke tasks or shut
workers down. So the command refuses to start without it, unless the operator says
``--insecure-localhost`` (then it listens on the loopback address only). It binds to
127.0.0.1 by default; a container or pod behind a port-forward passes
``--address 0.0.0.0``. Workers send task events by default (``celery_app``).
"""

from __future__ import annotations

import ipaddress
import os
import sys
from collections.abc import Mapping
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

errors = Console(stderr=True, soft_wrap=True)  # one error, one unbroken line

#: Flower reads its basic-auth credentials (``user:password[,user2:password2]``) here.
AUTH_VARIABLE = "FLOWER_BASIC_AUTH"
#: The task list's columns: Flower 2.2 leaves kwargs and result out by default, and
#: they are what names a chunk's batch, stage and size, and its failed orders.
#: ``FLOWER_TASKS_COLUMNS`` in the environment wins.
TASK_COLUMNS = "name,state,kwargs,result,received,runtime,worker,uuid"


class FlowerRefused(ValueError):
    """Raised when Flower would start without credentials, or with bad ones."""


def flower_command(
    *, port: int, address: str, insecure_localhost: bool, environ: Mapping[str, str]
) -> list[str]:
    """The command line that runs Flower, after checking it may start.

    Raises:
        FlowerRefused: ``FLOWER_BASIC_AUTH`` is unset or malformed and
            ``insecure_localhost`` is not given, or it is given with a
            non-loopback ``address``.
    """
    credentials = environ.get(AUTH_VARIABLE, "").strip()
    if credentials:
        _check_credentials(credentials)
    elif not insecure_localhost:
        raise FlowerRefused(
            f"{AUTH_VARIABLE} is not set: Flower has no login of its own. Set "
            f"{AUTH_VARIABLE}=user:password, or pass --insecure-localhost to run it "
            "without a password on 127.0.0.1 only"
        )
    elif not _is_loopback(address):
        raise FlowerRefused(
            f"--insecure-localhost listens on a loopback address only, not {address!r}"
        )
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "celery_app",
        "flower",
        f"--address={address}",
        f"--port={port}",
    ]
    if "FLOWER_TASKS_COLUMNS" not in environ:
        command.append(f"--tasks_columns={TASK_COLUMNS}")
    return command


def _check_credentials(credentials: str) -> None:
    for entry in credentials.split(","):
        user, _, password = entry.partition(":")
        if not user.strip() or not password:
            raise FlowerRefused(
                f"{AUTH_VARIABLE} must be user:password[,user2:password2]; "
                "an entry has no user or no password"
            )


def _is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _fail(message: str, code: int = 2) -> NoReturn:
    errors.print(f"[red]error:[/red] {escape(message)}", highlight=False)
    raise typer.Exit(code)


def flower(
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 5555,
    address: Annotated[
        str, typer.Option(help="Address to listen on (0.0.0.0 in a container).")
    ] = "127.0.0.1",
    insecure_localhost: Annotated[
        bool,
        typer.Option(
            "--insecure-localhost",
            help=f"Start without {AUTH_VARIABLE}, listening on a loopback address only.",
        ),
    ] = False,
) -> None:
    """Start Flower (task events of every worker) with basic auth from FLOWER_BASIC_AUTH."""
    try:
        argv = flower_command(
            port=port, address=address, insecure_localhost=insecure_localhost, environ=os.environ
        )
    except FlowerRefused as error:
        _fail(str(error))
    # Flower replaces this process: signals (Ctrl-C, SIGTERM) reach it directly.
    os.execv(sys.executable, argv)
