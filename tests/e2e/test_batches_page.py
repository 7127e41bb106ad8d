"""The batches page in a real browser: headless Chromium against ``batchline api``.

The operator pastes a key, the list shows a paused batch part-way, the batch is
resumed, and its progress bar reaches 100 % from the event stream alone: the page is
never reloaded (a marker set on its ``window`` survives). A screenshot is saved.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.helpers import make_orders, wait_for_final
from tests.support_api import ApiServer, make_key, running_api
from tests.support_browser import Browser, open_browser

pytestmark = pytest.mark.e2e

ORDERS = 60


@pytest.fixture(scope="module")
def api_server(
    service_env: dict[str, str], workers: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiServer]:
    env = {**service_env, "API_EVENTS_INTERVAL_SECONDS": "0.2"}
    with running_api(env, tmp_path_factory.mktemp("page-api") / "api.log") as server:
        yield server


def _js(value: str) -> str:
    return json.dumps(value)


def _row(batch_id: str, selector: str) -> str:
    """A JavaScript expression for an element of the batch's row in the list."""
    return f"document.querySelector('tr[data-batch-id={_js(batch_id)}] {selector}')"


def _paste_key(browser: Browser, token: str) -> None:
    browser.wait_for("document.querySelector('#login').hidden === false")
    browser.evaluate(
        f"document.querySelector('#key').value = {_js(token)};"
        "document.querySelector('#login').requestSubmit(); true"
    )


def test_the_list_shows_a_batch_reach_100_percent_live_and_the_batch_page_its_controls(
    api_server: ApiServer, chromium: str, tmp_path: Path
) -> None:
    # Given a batch that is paused part-way, and a write key
    token, _ = make_key("write")
    batch_id = f"page-{uuid.uuid4().hex[:8]}"
    with httpx.Client(
        base_url=api_server.url, headers={"Authorization": f"Bearer {token}"}, timeout=60
    ) as client:
        body = {
            "documents": make_orders(ORDERS, batch_id),
            "project_uuid": "page",
            "priority": "high",
            "options": {"batch_id": batch_id},
        }
        assert client.post("/v1/batches", json=body).status_code == 202
        assert client.post(f"/v1/batches/{batch_id}/pause").status_code == 200
        try:
            with open_browser(chromium, f"{api_server.url}/", tmp_path / "profile") as browser:
                # When the operator pastes the key into the page
                _paste_key(browser, token)
                browser.wait_for(f"{_row(batch_id, '.status')}?.textContent === 'paused'")
                browser.evaluate("window.__notReloaded = true")
                shown = browser.evaluate(f"{_row(batch_id, 'progress')}.value")
                assert shown < 100
                # and the batch is resumed elsewhere
                assert client.post(f"/v1/batches/{batch_id}/resume").status_code == 200

                # Then its bar reaches 100 % without a reload, and the key stays out of URLs
                browser.wait_for(f"{_row(batch_id, 'progress')}.value === 100", timeout=240)
                browser.wait_for(f"{_row(batch_id, '.status')}.textContent === 'completed'")
                assert browser.evaluate("window.__notReloaded") is True
                assert browser.evaluate(f"{_row(batch_id, '.progress span')}.textContent") == (
                    "100 %"
                )
                assert token not in browser.evaluate("location.href")
                assert browser.evaluate("sessionStorage.getItem('batchline.key')") == token
                screenshot = browser.screenshot(tmp_path / "batches-page.png")
                assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

                # And the batch's own page shows its stage counts and the write controls
                browser.call("Page.navigate", url=f"{api_server.url}/batches/{batch_id}")
                browser.wait_for("document.querySelectorAll('#stages tr').length === 4")
                delivery = browser.evaluate(
                    "[...document.querySelectorAll('#stages tr')].map("
                    "tr => [...tr.children].map(td => td.textContent))"
                )
                assert delivery[-1] == ["delivery", str(ORDERS), "0"]
                buttons = browser.evaluate(
                    "[...document.querySelectorAll('#controls button')]"
                    ".map(b => [b.textContent, b.disabled])"
                )
                # a finished batch: nothing to pause, resume or cancel; recover needs admin
                assert buttons == [["pause", True], ["resume", True], ["cancel", True]]
                assert browser.evaluate("document.querySelector('#bar').value") == 100
                browser.screenshot(tmp_path / "batch-page.png")
        finally:
            client.post(f"/v1/batches/{batch_id}/resume")  # 409 once it runs or ended
            wait_for_final([batch_id], timeout=240)


def _buttons(browser: Browser) -> list[list[Any]]:
    return list(
        browser.evaluate(
            "[...document.querySelectorAll('#controls button')]"
            ".map(b => [b.textContent, b.disabled])"
        )
    )


def test_the_batch_page_resumes_live_shows_the_recommendations_and_controls_by_scope(
    api_server: ApiServer, chromium: str, tmp_path: Path
) -> None:
    # Given a paused batch with one order that preflight refuses, and an admin key
    admin_token, _ = make_key("admin")
    reader_token, _ = make_key("read")
    batch_id = f"page-{uuid.uuid4().hex[:8]}"
    orders = make_orders(30, batch_id)
    orders[0] = {**orders[0], "target_url": f"https://{orders[0]['publisher_domain']}/self"}
    recoveries: list[str] = []
    with httpx.Client(
        base_url=api_server.url, headers={"Authorization": f"Bearer {admin_token}"}, timeout=60
    ) as client:
        body = {"documents": orders, "project_uuid": "page", "options": {"batch_id": batch_id}}
        assert client.post("/v1/batches", json=body).status_code == 202
        assert client.post(f"/v1/batches/{batch_id}/pause").status_code == 200
        try:
            url = f"{api_server.url}/batches/{batch_id}"
            with open_browser(chromium, url, tmp_path / "profile") as browser:
                _paste_key(browser, admin_token)
                browser.wait_for("document.querySelector('#do-resume')?.disabled === false")
                assert _buttons(browser) == [
                    ["pause", True], ["resume", False], ["cancel", False], ["recover", True]
                ]  # fmt: skip
                browser.evaluate("window.__notReloaded = true")
                # When the operator clicks resume
                browser.evaluate("document.querySelector('#do-resume').click(); true")
                # Then the bar reaches 100 % live and the batch ends partial
                browser.wait_for("document.querySelector('#bar').value === 100", timeout=240)
                browser.wait_for("document.querySelector('#facts').textContent"
                                 ".startsWith('status partial')")  # fmt: skip
                assert browser.evaluate("window.__notReloaded") is True
                assert browser.evaluate("document.querySelector('#control-result').textContent")
                # and the failures show the analysis' recommendations, recover now enabled
                advice = client.get(f"/v1/batches/{batch_id}/failures").json()
                expected = [r["message"] for r in advice["recommendations"]]
                assert expected, "a refused order always brings a recommendation"
                browser.wait_for("document.querySelectorAll('#recommendations li').length > 0")
                shown = browser.evaluate(
                    "[...document.querySelectorAll('#recommendations li')]"
                    ".map(li => li.firstChild.textContent)"
                )
                assert shown == expected
                assert _buttons(browser) == [
                    ["pause", True], ["resume", True], ["cancel", True], ["recover", False]
                ]  # fmt: skip
                assert browser.evaluate("document.querySelector('#links').textContent") == ""
                # And once the batch is recovered, its page links to the recovery batch
                # (a refused target is permanent: recovered only when named)
                named = {"order_ids": [orders[0]["order_id"]]}
                recovered = client.post(f"/v1/batches/{batch_id}/recover", json=named)
                assert recovered.status_code == 202, recovered.text
                recovery_id = recovered.json()["recovery_batch_id"]
                assert recovery_id, recovered.text
                recoveries.append(recovery_id)
                browser.call("Page.reload")
                link = f"#links a[href='/batches/{recovery_id}']"
                browser.wait_for(f"document.querySelector({_js(link)})?.textContent === "
                                 f"{_js(recovery_id)}")  # fmt: skip
                browser.screenshot(tmp_path / "batch-recovered.png")
                # And a read key sees the same batch without any control
                browser.evaluate(f"sessionStorage.setItem('batchline.key', {_js(reader_token)})")
                browser.call("Page.reload")
                browser.wait_for("document.querySelectorAll('#stages tr').length === 4")
                browser.wait_for("document.querySelector('#who').textContent.includes('(read)')")
                assert _buttons(browser) == []
                # and "Forget key" removes it from the tab
                browser.evaluate("document.querySelector('#logout').click(); true")
                browser.wait_for("document.querySelector('#login').hidden === false")
                assert browser.evaluate("sessionStorage.getItem('batchline.key')") is None
        finally:
            client.post(f"/v1/batches/{batch_id}/resume")  # 409 once it runs or ended
            wait_for_final([batch_id, *recoveries], timeout=240)
