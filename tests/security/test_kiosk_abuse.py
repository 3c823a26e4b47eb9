"""Kiosk abuse (issue 14 items 5 and 6): slow bodies, foreign pages, token guessing, junk.

Slow bodies and disconnects need real sockets, so those tests run the app under uvicorn in a
thread (the fake backend of ``tests/kiosk`` stands in for the pipeline); the rest use
Starlette's in-process client, which can also pose as different client addresses.
"""

from __future__ import annotations

import base64
import gc
import http.client
import json
import logging
import socket
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

pytest.importorskip(
    "uvicorn", reason="the kiosk extra is not installed: pip install 'retauth[kiosk]'"
)

import uvicorn
from starlette.testclient import TestClient

from biometrics.errors import FailureToAcquire
from biometrics.hostile_inputs import hostile_images
from biometrics.kiosk.app import KioskSettings, create_app
from biometrics.kiosk.capture import FolderSource
from biometrics.kiosk.operator import OperatorGate, OperatorToken
from tests.kiosk.conftest import FakeBackend, encode, synthetic_fundus

TOKEN = "correct-horse-battery"
PHOTO = encode(synthetic_fundus(1, 7))
#: What the kiosk page sends with a photograph and with an enrolment.
IMAGE = {"Content-Type": "application/octet-stream"}
ENROL = {"Content-Type": "application/json", "X-Operator-Token": TOKEN}


def settings(**overrides: object) -> KioskSettings:
    return KioskSettings(operator=OperatorGate(OperatorToken(TOKEN)), **overrides)


def enrolment(user_id: str = "alice", person: int = 1) -> str:
    images = [base64.b64encode(encode(synthetic_fundus(person, c))).decode() for c in (0, 5)]
    return json.dumps({"user_id": user_id, "images": images})


def client_at(app, address: str) -> TestClient:  # noqa: ANN001 - a Starlette app
    return TestClient(app, base_url="http://127.0.0.1", client=(address, 40000))


@pytest.fixture
def backend() -> FakeBackend:
    backend = FakeBackend()
    backend.calls = 0  # type: ignore[attr-defined]
    verify = backend.verify

    def counted(rgb, user_id):  # noqa: ANN001, ANN202
        backend.calls += 1  # type: ignore[attr-defined]
        return verify(rgb, user_id)

    backend.verify = counted  # type: ignore[method-assign]
    return backend


# --- real sockets ------------------------------------------------------------------------


@contextmanager
def serve(app) -> Iterator[int]:  # noqa: ANN001 - a Starlette app
    """Run ``app`` under uvicorn on a free loopback port; yield the port."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(10)


def slow_socket(port: int, path: str = "/api/verify", declared: int = 100_000) -> socket.socket:
    """Send the headers and one byte of a body that is never finished (a slow-loris)."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
        f"Content-Length: {declared}\r\n\r\nx".encode()
    )
    return sock


def post(port: int, body: bytes, headers: dict[str, str], path: str = "/api/verify") -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", path, body=body, headers=headers)
        return conn.getresponse().status
    finally:
        conn.close()


def test_slow_bodies_hold_no_worker_place(backend: FakeBackend) -> None:
    """Five sockets trickling their bodies (as many as workers + queue) while genuine
    verifies arrive: before the fix each held a slot and every verify was a 503."""
    app = create_app(backend, settings(workers=1, max_queue=4, body_timeout_s=1.5))
    with serve(app) as port:
        assert post(port, enrolment().encode(), ENROL, "/api/enrol") == 200
        loris = [slow_socket(port) for _ in range(5)]
        time.sleep(0.3)
        statuses = [post(port, PHOTO, IMAGE) for _ in range(3)]
        for sock in loris:
            sock.settimeout(5)
            answer = sock.recv(64)
            sock.close()
            assert answer.startswith(b"HTTP/1.1 408"), answer
    assert statuses == [200, 200, 200]


def test_one_client_cannot_take_every_connection(backend: FakeBackend) -> None:
    app = create_app(backend, settings(max_requests_per_client=3, body_timeout_s=2))
    with serve(app) as port:
        loris = [slow_socket(port) for _ in range(3)]
        time.sleep(0.3)
        assert post(port, PHOTO, IMAGE) == 429
        for sock in loris:
            sock.close()
        time.sleep(0.3)
        assert post(port, PHOTO, IMAGE) == 200


def test_client_disconnect_is_not_an_error(
    backend: FakeBackend, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(backend, settings())
    with caplog.at_level(logging.INFO, logger="retauth.kiosk"), serve(app) as port:
        for _ in range(3):
            slow_socket(port).close()
        time.sleep(0.5)
        assert post(port, PHOTO, IMAGE) == 200
    records = [r for r in caplog.records if r.name == "retauth.kiosk"]
    assert records and all(r.exc_info is None and r.levelno < logging.ERROR for r in records)
    assert app.state.executor.in_flight == 0


# --- in-process client -------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Origin": "http://127.0.0.1:9999"},  # another port is another origin
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Origin": "http://127.0.0.1", "Sec-Fetch-Site": "cross-site"},
    ],
)
def test_foreign_origin_is_refused_before_any_work(backend: FakeBackend, headers: dict) -> None:
    client = client_at(create_app(backend, settings()), "10.0.0.1")
    response = client.post(
        "/api/verify", params={"user_id": "alice"}, content=PHOTO, headers={**IMAGE, **headers}
    )
    assert response.status_code == 403 and "cross-origin" in response.json()["error"]
    enrol = client.post("/api/enrol", content=enrolment(), headers={**ENROL, **headers})
    assert enrol.status_code == 403
    assert backend.calls == 0 and backend.gallery == {}  # type: ignore[attr-defined]


def test_same_origin_page_is_served(backend: FakeBackend) -> None:
    client = client_at(create_app(backend, settings()), "10.0.0.1")
    page = {"Origin": "http://127.0.0.1", "Sec-Fetch-Site": "same-origin"}
    assert (
        client.post("/api/enrol", content=enrolment(), headers={**ENROL, **page}).status_code == 200
    )
    response = client.post("/api/verify", content=PHOTO, headers={**IMAGE, **page})
    assert response.status_code == 200 and response.json()["decision"] == "accepted"


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/json",
    ],
)
def test_upload_needs_an_image_content_type(backend: FakeBackend, content_type: str | None) -> None:
    client = client_at(create_app(backend, settings()), "10.0.0.1")
    headers = {} if content_type is None else {"Content-Type": content_type}
    response = client.post("/api/verify", content=PHOTO, headers=headers)
    assert response.status_code == 415 and "\n" not in response.json()["error"]
    assert backend.calls == 0  # type: ignore[attr-defined]
    accepted = client.post("/api/verify", content=PHOTO, headers={"Content-Type": "image/png"})
    assert accepted.status_code == 200


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/octet-stream"])
def test_enrolment_needs_json(backend: FakeBackend, content_type: str | None) -> None:
    client = client_at(create_app(backend, settings()), "10.0.0.1")
    headers = {"X-Operator-Token": TOKEN} | (
        {} if content_type is None else {"Content-Type": content_type}
    )
    assert client.post("/api/enrol", content=enrolment(), headers=headers).status_code == 415
    assert backend.gallery == {}


def test_wrong_tokens_throttle_only_their_client(backend: FakeBackend) -> None:
    """Before the fix five wrong tokens from anyone locked the operator out for everyone."""
    app = create_app(backend, settings())
    guesser, operator = client_at(app, "10.0.0.66"), client_at(app, "10.0.0.1")
    for _ in range(5):
        wrong = {**ENROL, "X-Operator-Token": "guess-guess-guess"}
        assert guesser.post("/api/enrol", content=enrolment(), headers=wrong).status_code == 401
    assert guesser.post("/api/enrol", content=enrolment(), headers=ENROL).status_code == 401
    assert operator.post("/api/enrol", content=enrolment(), headers=ENROL).status_code == 200


@pytest.mark.parametrize("depth", [10_000, 200_000])
def test_deeply_nested_json_is_a_400(backend: FakeBackend, depth: int) -> None:
    client = client_at(create_app(backend, settings()), "10.0.0.1")
    body = "[" * depth + "]" * depth
    response = client.post("/api/enrol", content=body, headers=ENROL)
    assert response.status_code == 400 and "nested" in response.json()["error"]


def test_refused_photograph_is_freed_at_once(backend: FakeBackend) -> None:
    """A refused capture's frames sat in a reference cycle (asyncio future ↔ traceback), so
    each large refused upload stayed resident until the cyclic collector ran: +30 MB per
    9 Mpx upload in a real kiosk, growing with every refusal."""
    probes: list[weakref.ref] = []

    def refuse(rgb, user_id):  # noqa: ANN001, ANN202
        probes.append(weakref.ref(rgb))
        raise FailureToAcquire("no retina visible in the capture")

    backend.verify = refuse  # type: ignore[method-assign]
    client = client_at(create_app(backend, settings()), "10.0.0.1")
    gc.collect()
    gc.disable()
    try:
        for _ in range(3):
            assert client.post("/api/verify", content=PHOTO, headers=IMAGE).status_code == 422
            deadline = time.monotonic() + 1  # the worker thread lets go a moment later
            while probes[-1]() is not None and time.monotonic() < deadline:
                time.sleep(0.01)
            assert probes[-1]() is None
    finally:
        gc.enable()


def test_scanner_folder_is_held_to_the_upload_limits(backend: FakeBackend, tmp_path: Path) -> None:
    """A file dropped into the watched folder is checked like an upload (pixels, aspect)."""
    source = FolderSource(tmp_path, max_pixels=200 * 200)
    client = client_at(create_app(backend, settings(capture=source)), "10.0.0.1")
    for name, data in [("big.png", PHOTO), ("strip.png", hostile_images()["tall_64x5000"])]:
        (tmp_path / name).write_bytes(data)
        response = client.post("/api/verify", params={"source": "device"})
        assert response.status_code == 400, name
        assert "pixel limit" in response.json()["error"] or "elongated" in response.json()["error"]
        (tmp_path / name).unlink()
    assert backend.calls == 0  # type: ignore[attr-defined]
