"""``batchline api`` (serve the HTTP API) and ``batchline api-key create|list|revoke``."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console

from pipeline.api_access import Scope

api_key_app = typer.Typer(help="HTTP API keys (stored hashed in the ledger).", no_args_is_help=True)
errors = Console(stderr=True, soft_wrap=True)


def api(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8080,
) -> None:
    """Serve the HTTP API (OpenAPI docs at /docs; every route but /healthz needs a key)."""
    from api.server import serve
    from pipeline.settings import get_settings

    settings = get_settings()
    settings.require_redis_url()
    settings.require_database_url()
    serve(host, port, settings.log_level)


@api_key_app.command("create")
def create(
    name: Annotated[str, typer.Option(help="Who or what uses the key.")],
    scope: Annotated[Scope, typer.Option(help="read, write (submit, control) or admin.")],
    project: Annotated[
        list[str] | None,
        typer.Option("--project", help="Only this project's batches (repeatable)."),
    ] = None,
) -> None:
    """Create a key and print it once (only its salted hash is stored)."""
    from ledger.api_keys import create_key
    from ledger.db import transaction

    if not name.strip() or len(name) > 100:
        errors.print("[red]error:[/red] --name: 1-100 characters")
        raise typer.Exit(2)
    with transaction() as session:
        token, key_id = create_key(session, name=name, scope=scope, projects=project or ())
    print(
        json.dumps(
            {"key_id": key_id, "key": token, "scope": scope.value, "projects": project or []}
        )
    )


@api_key_app.command("list")
def list_() -> None:
    """List every key (never the secrets), revoked ones too, as JSON lines."""
    from ledger.api_keys import list_keys
    from ledger.db import transaction

    with transaction() as session:
        for row in list_keys(session):
            print(json.dumps(row))


@api_key_app.command("revoke")
def revoke(key_id: str) -> None:
    """Revoke a key now: every later request with it gets 401."""
    from ledger.api_keys import revoke_key
    from ledger.db import transaction

    with transaction() as session:
        revoked = revoke_key(session, key_id)
    if not revoked:
        errors.print(f"[red]error:[/red] no unrevoked key with id {key_id!r}")
        raise typer.Exit(1)
    print(json.dumps({"key_id": key_id, "revoked": True}))
