"""The batches page's routes and ``/metrics`` on a real ``batchline api`` process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from metrics.exporter import EXPORTED_METRICS
from tests.support_api import ApiServer, make_key, running_api

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def api_server(
    service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiServer]:
    with running_api(service_env, tmp_path_factory.mktemp("page") / "api.log") as server:
        yield server


def test_the_page_needs_no_key_holds_no_data_and_loads_only_its_own_assets(
    api_server: ApiServer,
) -> None:
    for path in ("/", "/batches/some-batch"):
        page = httpx.get(f"{api_server.url}{path}", timeout=30)
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "default-src 'self'" in page.headers["content-security-policy"]
        assert 'src="/ui/page.js"' in page.text
        assert "http://" not in page.text and "https://" not in page.text  # no CDN
    batch_page = httpx.get(f"{api_server.url}/batches/%3Cb%3E", timeout=30).text
    assert 'data-batch-id="&lt;b&gt;"' in batch_page  # the id is escaped, never markup
    script = httpx.get(f"{api_server.url}/ui/page.js", timeout=30)
    assert script.headers["content-type"].startswith("text/javascript")
    assert "sessionStorage" in script.text and "Authorization" in script.text
    assert httpx.get(f"{api_server.url}/ui/index.html", timeout=30).status_code == 404
    assert httpx.get(f"{api_server.url}/ui/..%2Fpage.py", timeout=30).status_code == 404


def test_me_names_the_calling_key_and_needs_one(api_server: ApiServer) -> None:
    token, key_id = make_key("write", "page-p1", "page-p2")
    me = httpx.get(
        f"{api_server.url}/v1/me", headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    assert me.json() == {
        "key_id": key_id,
        "name": "test-write",
        "scope": "write",
        "projects": ["page-p1", "page-p2"],
    }
    assert httpx.get(f"{api_server.url}/v1/me", timeout=30).status_code == 401


def _metric_names(text: str) -> set[str]:
    # A counter's TYPE line may carry its samples' _total suffix.
    types = (line.split()[2] for line in text.splitlines() if line.startswith("# TYPE "))
    return {name.removesuffix("_total") for name in types}


def test_metrics_need_a_key_and_serve_the_exporters_collector(api_server: ApiServer) -> None:
    assert httpx.get(f"{api_server.url}/metrics", timeout=30).status_code == 401
    token, _ = make_key("read")
    answer = httpx.get(
        f"{api_server.url}/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=60
    )
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    assert "batchline_scrape_seconds" in _metric_names(answer.text)
    assert _metric_names(answer.text) <= EXPORTED_METRICS


def test_metrics_are_open_with_api_metrics_public(
    service_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**service_env, "API_METRICS_PUBLIC": "true"}
    with running_api(env, tmp_path / "api.log") as server:
        answer = httpx.get(f"{server.url}/metrics", timeout=60)
        assert answer.status_code == 200
        assert "batchline_scrape_seconds" in _metric_names(answer.text)
        # only /metrics opens: the data routes still need a key
        assert httpx.get(f"{server.url}/v1/batches", timeout=30).status_code == 401
