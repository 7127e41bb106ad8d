"""The batches page: ``/`` lists batches, ``/batches/{id}`` shows one, both live.

Server-rendered HTML shells with one small script (``api/static/page.js``), all served
by this process: no build step, no CDN. The page carries no data itself, so it needs
no key; the script asks the ``/v1`` routes for everything with the key the operator
pasted, which it keeps in the tab's ``sessionStorage`` and sends as
``Authorization: Bearer`` (never in a URL). Live progress is the SSE route read with
``fetch`` and a streaming body reader, because ``EventSource`` cannot send a header.
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any, Final

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, HTMLResponse

from api.auth import Reader

router = APIRouter(include_in_schema=False)

STATIC: Final = Path(__file__).parent / "static"
#: The files ``/ui/`` serves, and their types: nothing else under ``static`` is reachable.
ASSETS: Final = {"page.js": "text/javascript", "page.css": "text/css"}
#: Scripts and styles from this origin only, no inline code, no framing by other sites.
_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def render_page(view: str, batch_id: str = "") -> str:
    """The HTML shell of ``view`` (``list`` or ``batch``); the script fills it in."""
    template = (STATIC / "index.html").read_text(encoding="utf-8")
    return template.replace("{{view}}", view).replace("{{batch_id}}", escape(batch_id))


@router.get("/", response_class=HTMLResponse)
def batches_page() -> HTMLResponse:
    """The batches with status, priority, live progress, ETA and failures."""
    return HTMLResponse(render_page("list"), headers=_HEADERS)


@router.get("/batches/{batch_id}", response_class=HTMLResponse)
def batch_page(batch_id: str) -> HTMLResponse:
    """One batch: stage counts, failures with recommendations, and its controls."""
    return HTMLResponse(render_page("batch", batch_id), headers=_HEADERS)


@router.get("/ui/{name}")
def asset(name: str) -> FileResponse:
    """The page's script and stylesheet (404 for any other name)."""
    if name not in ASSETS:
        raise HTTPException(404, f"no asset {name!r}")
    return FileResponse(STATIC / name, media_type=ASSETS[name], headers=_HEADERS)


@router.get("/v1/me", include_in_schema=True, tags=["keys"])
def me(principal: Reader) -> dict[str, Any]:
    """The calling key: its id, name, scope and projects (the page shows controls by scope)."""
    return {
        "key_id": principal.key_id,
        "name": principal.name,
        "scope": principal.scope.value,
        "projects": sorted(principal.projects),
    }
