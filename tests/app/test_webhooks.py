"""Webhooks end to end: the real server delivers signed job events to a real HTTP receiver on
loopback that fails twice; the third attempt arrives, with the client's metadata."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from tests.app.server import Server, upload, wait_for_job

SECRET = "a-long-shared-secret-for-the-lims"


class Receiver:
    """A LIMS stand-in: answers 500 to the first two attempts of every event, then 200."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.attempts: dict[str, int] = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                event_id = self.headers["X-Restore-Event-Id"]
                receiver.requests.append((dict(self.headers.items()), body))
                receiver.attempts[event_id] = receiver.attempts.get(event_id, 0) + 1
                self.send_response(500 if receiver.attempts[event_id] <= 2 else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/lims/events"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def received(self, kind: str) -> list[tuple[dict[str, str], dict]]:
        return [
            (headers, json.loads(body))
            for headers, body in self.requests
            if headers["X-Restore-Event"] == kind
        ]


@pytest.fixture(scope="module")
def lims_server(tmp_path_factory: pytest.TempPathFactory, test_models: Path) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("webhooks")
    env = {
        "RESTORE_DATA_DIR": str(data / "var"),
        "RESTORE_MODELS_DIRS": f'["{test_models}"]',
        "RESTORE_WEBHOOK_ALLOW_PRIVATE": "true",
        "RESTORE_WEBHOOK_BACKOFF_S": "0.3",
    }
    server = Server(env, data / "server.log").start()
    yield server
    server.stop()


def test_a_job_event_reaches_a_receiver_that_fails_twice(
    lims_server: Server, pyramid_tiff: Path
) -> None:
    receiver = Receiver()
    with lims_server.client(timeout=60) as client:
        hook = client.post(
            "/v1/webhooks",
            json={"url": receiver.url, "secret": SECRET, "events": ["job.completed", "job.queued"]},
        )
        assert hook.status_code == 201 and "secret" not in hook.json()
        slide = upload(client, pyramid_tiff).json()
        metadata = {"accession": "S26-01234", "specimen": "A1", "stain": "H&E"}
        body = {"slide_id": slide["id"], "model": "identity", "metadata": metadata}
        job = wait_for_job(client, client.post("/v1/jobs", json=body).json()["id"])
        assert job["state"] == "completed" and job["metadata"] == metadata
        deadline = time.time() + 30
        while time.time() < deadline and len(receiver.received("job.completed")) < 3:
            time.sleep(0.2)
        completed = receiver.received("job.completed")
        assert len(completed) == 3  # two failures, then the delivery that arrives
        assert len({h["X-Restore-Event-Id"] for h, _ in completed}) == 1  # one event id
        headers, payload = completed[-1]
        raw = next(b for h, b in receiver.requests if h is headers)
        expected = "sha256=" + hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(headers["X-Restore-Signature"], expected)
        assert int(headers["Content-Length"]) == len(raw)
        assert payload["type"] == "job.completed" and payload["id"] == headers["X-Restore-Event-Id"]
        assert payload["job"]["metadata"]["accession"] == "S26-01234"
        assert payload["job"]["output_url"].endswith("/output.zarr")
        assert receiver.received("job.queued")
        assert not receiver.received("job.started")  # not subscribed
        deliveries = client.get(f"/v1/webhooks/{hook.json()['id']}/deliveries").json()
        for_completed = [d for d in deliveries if d["event_type"] == "job.completed"]
        assert [d["attempt"] for d in reversed(for_completed)] == [1, 2, 3]
        assert [d["status_code"] for d in reversed(for_completed)] == [500, 500, 200]
        assert for_completed[0]["delivered"] and for_completed[-1]["next_attempt_in_s"] == 0.3
    receiver.server.shutdown()


def test_loopback_receivers_are_refused_unless_allowed(client: httpx.Client) -> None:
    refused = client.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/hook", "secret": SECRET})
    assert refused.status_code == 422 and "RESTORE_WEBHOOK_ALLOW_PRIVATE" in refused.text
    assert (
        client.post("/v1/webhooks", json={"url": "ftp://lims/", "secret": SECRET}).status_code
        == 422
    )
    short = client.post("/v1/webhooks", json={"url": "https://lims.example", "secret": "x"})
    assert short.status_code == 422
