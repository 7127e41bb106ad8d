"""``batchline api-key create|list|revoke`` as an operator runs them."""

from __future__ import annotations

import json

import pytest

from ledger.api_keys import principal_for
from ledger.db import transaction
from pipeline.api_access import Scope
from tests.e2e.test_cli import batchline

pytestmark = pytest.mark.e2e


def test_a_created_key_is_listed_without_its_secret_and_refused_once_revoked(
    service_env,
) -> None:
    # Given a key made with the CLI, limited to two projects
    made = batchline(
        "api-key", "create", "--name", "orders-system", "--scope", "write",
        "--project", "p1", "--project", "p2", env=service_env,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    created = json.loads(made.stdout)
    token, key_id = created["key"], created["key_id"]
    with transaction() as session:
        principal = principal_for(session, token)
    assert principal is not None
    assert (principal.scope, principal.projects) == (Scope.WRITE, frozenset({"p1", "p2"}))
    # When listed, the key shows its name and scope but never the secret
    listed = batchline("api-key", "list", env=service_env)
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    mine = next(row for row in rows if row["key_id"] == key_id)
    assert (mine["name"], mine["scope"], mine["revoked_at"]) == ("orders-system", "write", None)
    assert token.split("_", 2)[2] not in listed.stdout
    # Then a revoke takes effect, and a second revoke says there is nothing to revoke
    assert batchline("api-key", "revoke", key_id, env=service_env).returncode == 0
    with transaction() as session:
        assert principal_for(session, token) is None
    again = batchline("api-key", "revoke", key_id, env=service_env)
    assert again.returncode == 1 and "no unrevoked key" in again.stderr


def test_an_unknown_scope_is_refused(service_env) -> None:
    done = batchline("api-key", "create", "--name", "x", "--scope", "root", env=service_env)
    assert done.returncode == 2
    assert "root" in done.stderr
