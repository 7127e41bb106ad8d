"""Who may do what over HTTP: API key scopes, project limits and the key format.

Pure: the keys' rows live in ``ledger.api_keys``, the FastAPI dependency that
checks them in ``api.auth``. A key is ``bl_<key_id>_<secret>``; the ledger keeps
``key_id``, a per-key random salt and SHA-256(salt + secret), never the secret.
Scopes are ordered: ``admin`` may do everything ``write`` may, which may do
everything ``read`` may.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

KEY_PREFIX: Final = "bl_"
_ID_BYTES: Final = 6
_SECRET_BYTES: Final = 24
_SALT_BYTES: Final = 16


class Scope(StrEnum):
    """What a key may do: read, write (submit and control) or admin (also recover)."""

    READ = "read"
    WRITE = "write"
    ADMIN = "admin"


_RANK: Final = {Scope.READ: 0, Scope.WRITE: 1, Scope.ADMIN: 2}


def allows(held: Scope, needed: Scope) -> bool:
    """Whether a key of scope ``held`` may call a route that needs ``needed``."""
    return _RANK[held] >= _RANK[needed]


def scope_to_submit(options: object) -> Scope:
    """The scope a submission with ``options`` needs.

    ``options.on_complete`` makes a worker call a registered Celery task of the
    caller's choosing when the batch ends: trusted code only, so ``admin``.
    """
    if isinstance(options, dict) and options.get("on_complete") is not None:
        return Scope.ADMIN
    return Scope.WRITE


@dataclass(frozen=True)
class Principal:
    """The caller a valid key stands for."""

    key_id: str
    name: str
    scope: Scope
    #: the projects the key is limited to; empty means every project
    projects: frozenset[str] = frozenset()

    def sees(self, project_uuid: str) -> bool:
        """Whether this key may see (and act on) a batch of ``project_uuid``."""
        return not self.projects or project_uuid in self.projects


@dataclass(frozen=True)
class NewKey:
    """A freshly made key: the token to hand out once, and what the ledger stores."""

    token: str
    key_id: str
    salt: str
    secret_hash: str


def new_key() -> NewKey:
    """Make a random key (``bl_<id>_<secret>``) with its salt and hash."""
    key_id = secrets.token_hex(_ID_BYTES)
    secret = secrets.token_urlsafe(_SECRET_BYTES)
    salt = secrets.token_hex(_SALT_BYTES)
    return NewKey(f"{KEY_PREFIX}{key_id}_{secret}", key_id, salt, hash_secret(salt, secret))


def hash_secret(salt: str, secret: str) -> str:
    """SHA-256 of the salt and the secret, hex (what the ledger keeps)."""
    return hashlib.sha256(f"{salt}{secret}".encode()).hexdigest()


def split_token(token: str) -> tuple[str, str] | None:
    """``(key_id, secret)`` of a well-formed token, else None."""
    if not token.startswith(KEY_PREFIX):
        return None
    key_id, sep, secret = token[len(KEY_PREFIX) :].partition("_")
    if not sep or len(key_id) != 2 * _ID_BYTES or not secret:
        return None
    return key_id, secret


def secret_matches(salt: str, secret: str, stored_hash: str) -> bool:
    """Whether ``secret`` hashes to ``stored_hash`` (compared in constant time)."""
    return hmac.compare_digest(hash_secret(salt, secret), stored_hash)
