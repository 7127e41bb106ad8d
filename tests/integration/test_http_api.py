"""The HTTP API as a client sees it: a real ``batchline api`` process and real workers."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from cli.workers import spawn_beat, stop_workers
from tests.integration.helpers import ledger_counts, make_orders, wait_for_final
from tests.support_api import ApiServer, make_key, read_events, running_api

pytestmark = pytest.mark.integration

#: Small enough to exceed in a test, large enough for every other request here.
MAX_BODY = 300_000
#: Five submits per key, then one a minute: a sixth quick submit is refused.
SUBMIT_RATE = "1/min:5"


@pytest.fixture(scope="module")
def sweeping(
    service_env: dict[str, str], workers: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """Beat for the module: the sweeper ends cancelled orders and resends lost work."""
    logs = tmp_path_factory.mktemp("api-beat")
    beat = spawn_beat(env=service_env, log_path=logs / "beat.log", schedule_path=logs / "schedule")
    try:
        yield
    finally:
        stop_workers([beat])


@pytest.fixture(scope="module")
def api_server(
    service_env: dict[str, str], sweeping: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiServer]:
    env = {
        **service_env,
        "API_MAX_BODY_BYTES": str(MAX_BODY),
        "API_SUBMIT_RATE": SUBMIT_RATE,
        "API_EVENTS_INTERVAL_SECONDS": "0.2",
    }
    with running_api(env, tmp_path_factory.mktemp("api") / "api.log") as server:
        yield server


@pytest.fixture(scope="module")
def api_url(api_server: ApiServer) -> str:
    return api_server.url


def _client(base: str, token: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=base, headers=headers, timeout=60)


@pytest.fixture()
def writer(api_url: str) -> Iterator[httpx.Client]:
    with _client(api_url, make_key("write")[0]) as client:
        yield client


def _submit(client: httpx.Client, orders: list[dict[str, Any]], project: str, **extra: Any) -> Any:
    return client.post("/v1/batches", json={"documents": orders, "project_uuid": project, **extra})


def test_submit_stream_until_completed_then_get_shows_final_counts(
    writer: httpx.Client,
) -> None:
    # Given a batch submitted over HTTP
    response = _submit(writer, make_orders(8, "http-flow"), "http-flow", priority="high")
    assert response.status_code == 202, response.text
    batch_id = response.json()["batch_id"]
    assert response.json()["task_id"]
    assert response.headers["location"] == f"/v1/batches/{batch_id}"
    # When its event stream is read to the end
    events = read_events(writer, f"/v1/batches/{batch_id}/events")
    # Then it ends with the final status, after every milestone, and GET agrees
    assert events[-1].kind == "status"
    assert events[-1].data == {"batch_id": batch_id, "status": "completed"}
    assert [e.data["percent"] for e in events if e.kind == "milestone"] == [25, 50, 75, 100]
    progress = [e for e in events if e.kind == "progress"]
    assert progress[-1].data["completed"] == 8
    assert progress[-1].data["progress_percentage"] == 100.0
    status = writer.get(f"/v1/batches/{batch_id}").json()
    assert (status["status"], status["completed"], status["failed"]) == ("completed", 8, 0)
    assert status["stages"]["delivery"]["done"] == 8


def test_a_reconnect_with_last_event_id_resumes_without_repeats(writer: httpx.Client) -> None:
    # Given a batch and the first event of its stream
    batch_id = _submit(writer, make_orders(8, "http-resume"), "http-resume").json()["batch_id"]
    first = read_events(writer, f"/v1/batches/{batch_id}/events", stop_after=1)[0]
    assert first.kind == "progress"
    wait_for_final([batch_id])
    # When the client reconnects with that id
    resumed = read_events(writer, f"/v1/batches/{batch_id}/events", last_event_id=first.id)
    # Then it gets the newer snapshot and only the milestones passed since
    ended_before = first.data["completed"] + first.data["failed"]
    expected = [p for p in (25, 50, 75, 100) if ended_before * 100 < p * 8]
    assert [e.data["percent"] for e in resumed if e.kind == "milestone"] == expected
    assert [e.kind for e in resumed if e.kind != "milestone"] == ["progress", "status"]
    assert resumed[0].id != first.id
    # And a reconnect with the final id gets only the final status, nothing again
    again = read_events(writer, f"/v1/batches/{batch_id}/events", last_event_id=resumed[-1].id)
    assert [e.kind for e in again] == ["status"]


def test_a_repeated_batch_id_returns_the_batch_and_other_content_conflicts(
    writer: httpx.Client,
) -> None:
    orders = make_orders(3, "http-repeat")
    options = {"batch_id": "http-repeat-1"}
    first = _submit(writer, orders, "http-repeat", options=options)
    assert first.status_code == 202, first.text
    before = ledger_counts()
    again = _submit(writer, orders, "http-repeat", options=options)
    assert again.status_code == 200
    assert again.json() == first.json()
    other = _submit(writer, orders[:2], "http-repeat", options=options)
    assert other.status_code == 409
    assert other.json()["field"] == "options.batch_id"
    assert ledger_counts()["batches"] == before["batches"]
    assert ledger_counts()["items"] == before["items"]
    wait_for_final(["http-repeat-1"])


def test_invalid_orders_get_422_with_the_manifest_field_path_and_nothing_is_written(
    writer: httpx.Client,
) -> None:
    orders = make_orders(3, "http-invalid")
    orders[1]["language"] = "english"
    before = ledger_counts()
    response = _submit(writer, orders, "http-invalid")
    assert response.status_code == 422
    body = response.json()
    assert body["field"] == "documents[1].language"
    assert body["error"].startswith("documents[1].language: must be a two-letter ISO 639-1 code")
    assert "Traceback" not in response.text
    jsonl = writer.post(
        "/v1/batches?project_uuid=p",
        content=b'{"order_id": "a"}\n{not json\n',
        headers={"content-type": "application/x-ndjson"},
    )
    assert (jsonl.status_code, jsonl.json()["field"]) == (422, "body line 2")
    assert writer.get("/v1/batches?limit=0").status_code == 422
    assert ledger_counts() == before


def test_jsonl_submission_is_accepted(writer: httpx.Client) -> None:
    import json

    lines = "\n".join(json.dumps(order) for order in make_orders(3, "http-jsonl"))
    response = writer.post(
        "/v1/batches?project_uuid=http-jsonl&priority=low&batch_id=http-jsonl-1",
        content=lines.encode(),
        headers={"content-type": "application/x-ndjson"},
    )
    assert response.status_code == 202, response.text
    assert response.json()["batch_id"] == "http-jsonl-1"
    assert writer.get("/v1/batches/http-jsonl-1").json()["priority"] == "low"
    wait_for_final(["http-jsonl-1"])


def test_a_body_over_the_limit_gets_413_and_nothing_is_written(writer: httpx.Client) -> None:
    before = ledger_counts()
    big = {"documents": [], "project_uuid": "p", "options": {"pad": "x" * MAX_BODY}}
    assert writer.post("/v1/batches", json=big).status_code == 413
    # Also when the client streams the body without announcing its length
    chunks = iter([b'{"documents": [', b" " * MAX_BODY, b"]}"])
    streamed = writer.post("/v1/batches", content=chunks)
    assert streamed.status_code == 413
    assert ledger_counts() == before


def test_submits_beyond_the_key_bucket_get_429_with_retry_after(api_url: str) -> None:
    with _client(api_url, make_key("write")[0]) as client:
        answers = [client.post("/v1/batches", json={"documents": []}) for _ in range(6)]
    assert [a.status_code for a in answers[:5]] == [422] * 5
    assert answers[5].status_code == 429
    assert int(answers[5].headers["retry-after"]) >= 1


def test_every_auth_rule(api_url: str, writer: httpx.Client) -> None:
    # Given a batch of project A
    response = _submit(writer, make_orders(3, "http-auth"), "http-auth-a")
    batch_id = response.json()["batch_id"]
    order_id = make_orders(3, "http-auth")[0]["order_id"]
    reader_token, _ = make_key("read")
    other_token, _ = make_key("admin", "http-auth-b")
    revoked_token, revoked_id = make_key("admin")
    with (
        _client(api_url, None) as anonymous,
        _client(api_url, "bl_000000000000_wrong") as wrong,
        _client(api_url, reader_token) as reader,
        _client(api_url, other_token) as other,
        _client(api_url, revoked_token) as revoked,
    ):
        # No key, or a wrong one: 401 everywhere but /healthz
        assert anonymous.get("/healthz").status_code == 200
        assert anonymous.get(f"/v1/batches/{batch_id}").status_code == 401
        assert anonymous.get("/readyz").status_code == 401
        assert wrong.get(f"/v1/batches/{batch_id}").status_code == 401
        # A read key reads but may not write; a write key may not recover
        assert reader.get(f"/v1/batches/{batch_id}").status_code == 200
        assert _submit(reader, make_orders(1, "http-auth-r"), "x").status_code == 403
        assert reader.post(f"/v1/batches/{batch_id}/pause").status_code == 403
        assert writer.post(f"/v1/batches/{batch_id}/recover").status_code == 403
        # Naming a task for the workers to call at the end is for admin keys only
        hook = {"on_complete": "batchline.maintenance.sweep"}
        assert _submit(writer, make_orders(1, "h"), "x", options=hook).status_code == 403
        # A key of another project sees nothing of project A: 404, as for no batch at all
        for path in ("", "/orders", "/failures", "/events"):
            assert other.get(f"/v1/batches/{batch_id}{path}").status_code == 404
        assert other.post(f"/v1/batches/{batch_id}/cancel").status_code == 404
        assert other.get(f"/v1/orders/{order_id}").status_code == 404
        assert other.get("/v1/batches?project=http-auth-a").json()["batches"] == []
        listed = other.get("/v1/batches", params={"limit": 500}).json()["batches"]
        assert {row["project_uuid"] for row in listed} <= {"http-auth-b"}
        assert _submit(other, make_orders(1, "http-auth-o"), "http-auth-a").status_code == 404
        # A revoked key is refused from then on
        assert revoked.get(f"/v1/batches/{batch_id}").status_code == 200
        from ledger.api_keys import revoke_key
        from ledger.db import transaction

        with transaction() as session:
            assert revoke_key(session, revoked_id)
        assert revoked.get(f"/v1/batches/{batch_id}").status_code == 401
    wait_for_final([batch_id])


def test_controls_listing_orders_failures_and_recovery(api_url: str, writer: httpx.Client) -> None:
    # Given a batch of 30 orders (the writer's rate limit keeps it running for a while);
    # the module's sweeper cancels the orders a worker held when the cancel came

    response = _submit(writer, make_orders(30, "http-controls"), "http-controls")
    batch_id = response.json()["batch_id"]
    admin_token, _ = make_key("admin")
    try:
        # Pause, then pausing again is refused with the reason
        assert writer.post(f"/v1/batches/{batch_id}/pause").json()["status"] == "paused"
        refused = writer.post(f"/v1/batches/{batch_id}/pause")
        assert refused.status_code == 409
        assert "is not running" in refused.json()["error"]
        assert writer.post(f"/v1/batches/{batch_id}/resume").status_code == 200
        with _client(api_url, admin_token) as admin:
            # Recovering an open batch is a conflict, not bad input
            assert admin.post(f"/v1/batches/{batch_id}/recover").status_code == 409
        cancelled = writer.post(f"/v1/batches/{batch_id}/cancel")
        assert cancelled.status_code == 200, cancelled.text
    finally:
        writer.post(f"/v1/batches/{batch_id}/cancel")
    wait_for_final([batch_id])
    assert writer.post(f"/v1/batches/{batch_id}/cancel").status_code == 409
    assert writer.get(f"/v1/batches/{batch_id}").json()["status"] == "cancelled"
    # Orders page by page, in submission order, and by state
    seen, cursor = [], None
    while True:
        page = writer.get(
            f"/v1/batches/{batch_id}/orders",
            params={"limit": 7, **({"cursor": cursor} if cursor else {})},
        ).json()
        seen += [row["order_id"] for row in page["orders"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [order["order_id"] for order in make_orders(30, "http-controls")]
    states = writer.get(f"/v1/batches/{batch_id}/orders", params={"state": "cancelled"}).json()
    assert all(row["state"] == "cancelled" for row in states["orders"])
    # The journey of one order, the failure analysis, and a recovery of the finished batch
    journey = writer.get(f"/v1/orders/{seen[0]}").json()
    assert [j["batch_id"] for j in journey["journeys"]] == [batch_id]
    assert writer.get(f"/v1/batches/{batch_id}/failures").json()["batch_id"] == batch_id
    with _client(api_url, admin_token) as admin:
        recovered = admin.post(f"/v1/batches/{batch_id}/recover", json={"retry_all": True})
        assert recovered.status_code == 202, recovered.text
        bad = admin.post(f"/v1/batches/{batch_id}/recover", json={"max_retries": 99})
        assert bad.status_code == 422
        assert bad.json()["field"].startswith("options.max_retries")


def test_listing_filters_and_pages_with_a_cursor(writer: httpx.Client) -> None:
    ids = [
        _submit(writer, make_orders(2, f"http-list-{n}"), "http-list").json()["batch_id"]
        for n in range(3)
    ]
    pages, cursor = [], None
    while True:
        params: dict[str, Any] = {"project": "http-list", "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = writer.get("/v1/batches", params=params).json()
        pages.append([row["batch_id"] for row in page["batches"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(row for page in pages for row in page) == sorted(ids)
    assert len(pages[0]) == 2
    assert (
        writer.get("/v1/batches", params={"project": "http-list", "priority": "low"}).json()[
            "batches"
        ]
        == []
    )
    assert writer.get("/v1/batches", params={"cursor": "garbage"}).status_code == 422
    wait_for_final(ids)


def test_unknown_ids_are_404(writer: httpx.Client) -> None:
    for path in ("/v1/batches/nope", "/v1/batches/nope/orders", "/v1/orders/nope"):
        response = writer.get(path)
        assert response.status_code == 404, path
        assert "Traceback" not in response.text
    assert writer.post("/v1/batches/nope/pause").status_code == 404


def test_readyz_reports_every_check(api_url: str) -> None:
    with _client(api_url, make_key("read")[0]) as reader:
        answer = reader.get("/readyz")
    assert answer.status_code == 200, answer.text
    assert answer.json()["checks"] == {
        "redis": True,
        "ledger": True,
        "migrations": True,
        "halt": True,
        "workers": True,
    }


#: Server memory allowed for 50 open streams of one batch over one open stream.
STREAMS_MEMORY_MIB = 25.0


def test_fifty_clients_follow_one_batch_with_flat_server_memory(
    api_server: ApiServer, writer: httpx.Client
) -> None:
    # Given a batch held paused, and one client already following it (the server warm)
    response = _submit(writer, make_orders(10, "http-fifty"), "http-fifty")
    batch_id = response.json()["batch_id"]
    url = f"/v1/batches/{batch_id}/events"
    assert writer.post(f"/v1/batches/{batch_id}/pause").status_code == 200
    assert read_events(writer, url, stop_after=1)[0].data["status"] == "paused"
    baseline = api_server.rss_mib()
    # When fifty clients follow it at once
    connected = threading.Barrier(51)
    results: list[list[Any]] = []

    def follow() -> None:
        with _client(api_server.url, writer.headers["authorization"].split()[1]) as client:
            events = read_events(client, url, on_first=lambda: connected.wait(120))
            results.append(events)

    threads = [threading.Thread(target=follow) for _ in range(50)]
    for thread in threads:
        thread.start()
    connected.wait(120)
    with_fifty = api_server.rss_mib()
    assert writer.post(f"/v1/batches/{batch_id}/resume").status_code == 200
    for thread in threads:
        thread.join(180)
    # Then every client saw the batch complete, and the server's memory stayed flat
    assert len(results) == 50
    assert all(events[-1].data["status"] == "completed" for events in results)
    print(f"API RSS: {baseline:.1f} MiB with 1 stream, {with_fifty:.1f} MiB with 51")
    assert with_fifty - baseline < STREAMS_MEMORY_MIB, (baseline, with_fifty)


def _socket_events(url: str, token: str | None) -> list[dict[str, Any]]:
    from websockets.sync.client import connect

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    events = []
    with connect(url, additional_headers=headers, open_timeout=60) as socket:
        for message in socket:
            events.append(json.loads(message))
    return events


def test_the_websocket_sends_the_same_events_and_refuses_bad_keys(
    api_url: str, writer: httpx.Client
) -> None:
    from websockets.exceptions import ConnectionClosedError, InvalidStatus

    # Given a batch, and its socket URL
    batch_id = _submit(writer, make_orders(8, "http-ws"), "http-ws").json()["batch_id"]
    url = api_url.replace("http://", "ws://") + f"/v1/ws/batches/{batch_id}"
    token = writer.headers["authorization"].split()[1]
    # When a client with a key follows it to the end
    events = _socket_events(url, token)
    # Then it gets what the SSE stream sends: progress, every milestone, the final status
    assert events[0]["event"] == "progress"
    assert [e["data"]["percent"] for e in events if e["event"] == "milestone"] == [
        25, 50, 75, 100,
    ]  # fmt: skip
    assert events[-1] == {
        "id": events[-1]["id"],
        "event": "status",
        "data": {"batch_id": batch_id, "status": "completed"},
    }
    # And a reconnect from the last id gets only the final status again
    resumed = _socket_events(f"{url}?last_event_id={events[-1]['id']}", token)
    assert [e["event"] for e in resumed] == ["status"]
    # A socket without a key, or of another project, is closed before anything is sent
    other_token, _ = make_key("read", "http-ws-other")
    for bad in (None, other_token):
        with pytest.raises((ConnectionClosedError, InvalidStatus)):
            _socket_events(url, bad)


def test_readyz_is_503_naming_the_halt_while_the_system_is_halted(api_url: str, halt: Any) -> None:
    with _client(api_url, make_key("read")[0]) as reader:
        halt("http readiness test")
        answer = reader.get("/readyz")
    assert answer.status_code == 503
    assert answer.json()["ready"] is False
    assert answer.json()["checks"]["halt"] == "halted: http readiness test"
    assert answer.json()["checks"]["redis"] is True


def test_openapi_describes_every_v1_route(api_url: str) -> None:
    with _client(api_url, None) as anonymous:
        spec = anonymous.get("/openapi.json").json()
        assert anonymous.get("/docs").status_code == 200
    assert set(spec["paths"]) >= {
        "/v1/batches",
        "/v1/batches/{batch_id}",
        "/v1/batches/{batch_id}/orders",
        "/v1/batches/{batch_id}/events",
        "/v1/batches/{batch_id}/pause",
        "/v1/batches/{batch_id}/resume",
        "/v1/batches/{batch_id}/cancel",
        "/v1/batches/{batch_id}/recover",
        "/v1/batches/{batch_id}/failures",
        "/v1/orders/{order_id}",
        "/healthz",
        "/readyz",
    }
    submit = spec["paths"]["/v1/batches"]["post"]
    assert "application/x-ndjson" in submit["requestBody"]["content"]
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
