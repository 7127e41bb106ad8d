"""``POST /v1/orders`` through a real ``batchline api`` process and real workers."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.integration.helpers import make_orders, wait_for_final
from tests.support_api import ApiServer, make_key, running_api

pytestmark = pytest.mark.integration

#: Three orders make a batch; age never flushes during a test.
GROUP = 3


@pytest.fixture(scope="module")
def api_server(
    service_env: dict[str, str], workers: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiServer]:
    env = {
        **service_env,
        "INTAKE_MAX_ORDERS": str(GROUP),
        "INTAKE_MAX_WAIT_SECONDS": "3600",
    }
    with running_api(env, tmp_path_factory.mktemp("intake-api") / "api.log") as server:
        yield server


def _client(server: ApiServer, scope: str, *projects: str) -> httpx.Client:
    token = make_key(scope, *projects)[0]
    headers = {"Authorization": f"Bearer {token}"}
    return httpx.Client(base_url=server.url, headers=headers, timeout=60)


def _order(client: httpx.Client, document: Any, project: str, **extra: Any) -> httpx.Response:
    return client.post("/v1/orders", json={"document": document, "project_uuid": project, **extra})


def test_single_orders_become_a_batch_and_are_found_before_and_after(
    api_server: ApiServer,
) -> None:
    project = f"http-intake-{uuid.uuid4().hex[:6]}"
    orders = make_orders(GROUP, project)
    with _client(api_server, "write") as writer:
        # Given one accepted order: 202, and it is found while it waits
        first = _order(writer, orders[0], project, priority="high")
        assert first.status_code == 202, first.text
        assert first.headers["location"] == f"/v1/orders/{orders[0]['order_id']}"
        waiting = writer.get(f"/v1/orders/{orders[0]['order_id']}").json()
        assert waiting["journeys"] == [] and waiting["intake"][0]["state"] == "pending"
        assert "waits for its batch" in waiting["waiting"]
        # ... a resend is recognised (200), other content with its id is refused (409)
        assert _order(writer, orders[0], project, priority="high").status_code == 200
        changed = _order(writer, {**orders[0], "topic": "other"}, project, priority="high")
        assert changed.status_code == 409
        assert changed.json()["field"] == "document.order_id"
        # ... an invalid order is refused alone, naming the field, and stores nothing
        bad = _order(writer, {**orders[1], "language": "english"}, project, priority="high")
        assert bad.status_code == 422
        assert bad.json()["field"] == "document.language"
        assert writer.get(f"/v1/orders/{orders[1]['order_id']}").status_code == 404
        # When the group is full
        for order in orders[1:]:
            assert _order(writer, order, project, priority="high").status_code == 202
        # Then it is one batch, and the order's answer now holds its journey
        found = writer.get(f"/v1/orders/{orders[0]['order_id']}").json()
        batch_id = found["intake"][0]["batch_id"]
        assert found["intake"][0]["state"] == "flushed" and "waiting" not in found
        assert wait_for_final([batch_id]) == {batch_id: "COMPLETED"}
        final = writer.get(f"/v1/orders/{orders[0]['order_id']}").json()
        assert [journey["batch_id"] for journey in final["journeys"]] == [batch_id]


def test_intake_keys_projects_and_flush(api_server: ApiServer) -> None:
    project = f"http-intake-{uuid.uuid4().hex[:6]}"
    (order,) = make_orders(1, project)
    with _client(api_server, "read") as reader:
        assert _order(reader, order, project).status_code == 403
        assert reader.get("/v1/intake").status_code == 403
    with _client(api_server, "write", "elsewhere") as stranger:
        assert _order(stranger, order, project).status_code == 404
    assert httpx.post(f"{api_server.url}/v1/orders", json={}).status_code == 401
    with _client(api_server, "write", project) as writer:
        assert _order(writer, order, project, priority="low").status_code == 202
        assert writer.post("/v1/orders", json={"document": order, "extra": 1}).status_code == 422
        assert _order(writer, {**order, "order_id": "bad id!"}, project).status_code == 422
    with _client(api_server, "write", "elsewhere") as stranger:
        assert stranger.get(f"/v1/orders/{order['order_id']}").status_code == 404
    with _client(api_server, "admin") as admin:
        stats = admin.get("/v1/intake").json()
        assert stats["pending"] >= 1 and stats["refused_orders"] >= 1
        # When an admin flushes, the lone order becomes a batch at once
        flushed = admin.post("/v1/intake/flush").json()["batch_ids"]
        batch_id = admin.get(f"/v1/orders/{order['order_id']}").json()["intake"][0]["batch_id"]
        assert batch_id in flushed
        assert admin.get("/v1/intake").json()["flushed_batches"] >= 1
    assert wait_for_final([batch_id]) == {batch_id: "COMPLETED"}
