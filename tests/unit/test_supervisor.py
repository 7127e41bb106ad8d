"""The supervisor ``batchline worker`` becomes: small, and it stops every worker when one exits."""

from __future__ import annotations

import json
import os
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


def test_the_first_worker_to_exit_gives_the_exit_code_and_the_others_are_stopped(
    tmp_path,
) -> None:
    pid_file = tmp_path / "sleeper.pid"
    # The sleeper notes its pid; the quitter exits only once it has, so both ran.
    sleeper = [
        sys.executable,
        "-c",
        "import os, sys, time; open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(120)",
        str(pid_file),
    ]
    wait_then_quit = (
        "import os, sys, time\n"
        "while not (os.path.exists(sys.argv[1]) and os.path.getsize(sys.argv[1])):\n"
        "    time.sleep(0.01)\n"
        "sys.exit(3)"
    )
    quitter = [sys.executable, "-c", wait_then_quit, str(pid_file)]
    assert supervisor.supervise([sleeper, quitter]) == 3
    # The sleeper was stopped and reaped, not left to run out its two minutes
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)


def test_its_command_line_carries_the_workers_command_lines() -> None:
    argvs = [["celery", "-A", "celery_app", "worker"], ["celery", "-Q", "batch.high.io"]]
    command = supervisor.command(argvs)
    assert command[:3] == [sys.executable, "-m", "cli.supervisor"]
    assert json.loads(command[3]) == argvs


@pytest.mark.parametrize("args", [[], ["[]"], ['["celery"]'], ["[[]]"], ['[["a"]]', "x"]])
def test_a_malformed_command_line_starts_nothing(args, capsys) -> None:
    assert supervisor.main(args) == 2
    assert "cli.supervisor" in capsys.readouterr().err
