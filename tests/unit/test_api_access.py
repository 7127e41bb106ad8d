"""API keys' pure rules: scopes, project limits, the key format and its hash."""

from __future__ import annotations

import pytest

from pipeline.api_access import (
    Principal,
    Scope,
    allows,
    hash_secret,
    new_key,
    scope_to_submit,
    secret_matches,
    split_token,
)


@pytest.mark.parametrize(
    ("held", "needed", "allowed"),
    [
        (Scope.READ, Scope.READ, True),
        (Scope.READ, Scope.WRITE, False),
        (Scope.READ, Scope.ADMIN, False),
        (Scope.WRITE, Scope.READ, True),
        (Scope.WRITE, Scope.WRITE, True),
        (Scope.WRITE, Scope.ADMIN, False),
        (Scope.ADMIN, Scope.ADMIN, True),
        (Scope.ADMIN, Scope.READ, True),
    ],
)
def test_a_scope_allows_its_own_routes_and_those_below(
    held: Scope, needed: Scope, allowed: bool
) -> None:
    assert allows(held, needed) is allowed


def test_a_key_limited_to_projects_sees_only_those() -> None:
    limited = Principal("k", "n", Scope.READ, frozenset({"a", "b"}))
    assert limited.sees("a") and limited.sees("b")
    assert not limited.sees("c")
    assert Principal("k", "n", Scope.READ).sees("anything")


def test_a_new_key_round_trips_and_only_its_secret_matches() -> None:
    key = new_key()
    parts = split_token(key.token)
    assert parts is not None
    key_id, secret = parts
    assert key_id == key.key_id
    assert secret not in key.secret_hash and secret not in key.salt
    assert secret_matches(key.salt, secret, key.secret_hash)
    assert not secret_matches(key.salt, secret + "x", key.secret_hash)


def test_the_same_secret_under_two_salts_hashes_differently() -> None:
    assert hash_secret("salt-1", "secret") != hash_secret("salt-2", "secret")


@pytest.mark.parametrize(
    "token", ["", "bl_", "bl_short_secret", "xx_0123456789ab_secret", "bl_0123456789ab_"]
)
def test_malformed_tokens_are_refused(token: str) -> None:
    assert split_token(token) is None


def test_a_submission_naming_a_completion_task_needs_admin() -> None:
    assert scope_to_submit({"on_complete": "myapp.batch_done"}) is Scope.ADMIN
    assert scope_to_submit({"batch_id": "b", "on_complete": None}) is Scope.WRITE
    assert scope_to_submit(None) is Scope.WRITE
    assert scope_to_submit("not options") is Scope.WRITE
