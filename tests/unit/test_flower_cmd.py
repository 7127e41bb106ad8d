"""``batchline flower`` refuses to start Flower without credentials, naming what to set."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from cli.flower_cmd import TASK_COLUMNS, FlowerRefused, flower_command
from cli.main import app


def test_without_basic_auth_flower_is_refused_with_the_variable_named() -> None:
    with pytest.raises(FlowerRefused, match="FLOWER_BASIC_AUTH is not set"):
        flower_command(port=5555, address="127.0.0.1", insecure_localhost=False, environ={})


@pytest.mark.parametrize("credentials", ["ops", "ops:", ":secret", "ops:pw,bob"])
def test_malformed_credentials_are_refused(credentials: str) -> None:
    with pytest.raises(FlowerRefused, match="user:password"):
        flower_command(
            port=5555,
            address="127.0.0.1",
            insecure_localhost=False,
            environ={"FLOWER_BASIC_AUTH": credentials},
        )


def test_insecure_localhost_refuses_an_address_others_can_reach() -> None:
    with pytest.raises(FlowerRefused, match="loopback"):
        flower_command(port=5555, address="0.0.0.0", insecure_localhost=True, environ={})


@pytest.mark.parametrize("address", ["127.0.0.1", "localhost", "::1"])
def test_insecure_localhost_runs_on_a_loopback_address(address: str) -> None:
    argv = flower_command(port=5600, address=address, insecure_localhost=True, environ={})
    assert argv[-3:-1] == [f"--address={address}", "--port=5600"]


def test_with_credentials_it_runs_celerys_flower_on_this_app() -> None:
    argv = flower_command(
        port=5555,
        address="0.0.0.0",
        insecure_localhost=False,
        environ={"FLOWER_BASIC_AUTH": "ops:pw,bob:pw2"},
    )
    assert argv[1:] == [
        "-m",
        "celery",
        "-A",
        "celery_app",
        "flower",
        "--address=0.0.0.0",
        "--port=5555",
        f"--tasks_columns={TASK_COLUMNS}",
    ]


def test_the_operators_own_task_columns_win() -> None:
    environ = {"FLOWER_BASIC_AUTH": "ops:pw", "FLOWER_TASKS_COLUMNS": "name,state"}
    argv = flower_command(port=5555, address="::1", insecure_localhost=False, environ=environ)
    assert not any(arg.startswith("--tasks_columns") for arg in argv)


def test_the_command_exits_2_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLOWER_BASIC_AUTH", raising=False)
    result = CliRunner().invoke(app, ["flower"])
    assert result.exit_code == 2
    assert "FLOWER_BASIC_AUTH is not set" in result.output
