"""The supervisor ``batchline worker`` becomes: small, and it stops every worker when one exits."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from cli import supervisor

#: What the supervisor must not import: the CLI's and the workers' libraries.
HEAVY = ("celery", "kombu", "redis", "sqlalchemy", "psycopg", "typer", "rich", "pydantic")


def test_the_supervisor_imports_the_standard_library_only() -> None:
    # A fresh interpreter: this test process has imported everything already.
    probe = (
        "import sys, cli.supervisor; "
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_first_worker_to_exit_gives_the_exit_code_and_the_others_are_stopped() -> None:
    sleeper = [sys.executable, "-c", "import time; time.sleep(120)"]
    quitter = [sys.executable, "-c", "import sys; sys.exit(3)"]
    assert supervisor.supervise([sleeper, quitter]) == 3


def test_its_command_line_carries_the_workers_command_lines() -> None:
    argvs = [["celery", "-A", "celery_app", "worker"], ["celery", "-Q", "batch.high.io"]]
    command = supervisor.command(argvs)
    assert command[:3] == [sys.executable, "-m", "cli.supervisor"]
    assert json.loads(command[3]) == argvs


@pytest.mark.parametrize("args", [[], ["[]"], ['["celery"]'], ["[[]]"], ['[["a"]]', "x"]])
def test_a_malformed_command_line_starts_nothing(args, capsys) -> None:
    assert supervisor.main(args) == 2
    assert "cli.supervisor" in capsys.readouterr().err
