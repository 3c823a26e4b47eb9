"""The kiosk JSON API over a fake backend, through Starlette's in-process TestClient."""

from __future__ import annotations

import base64
import json
import threading
from pathlib import Path

import pytest

pytest.importorskip(
    "starlette", reason="the kiosk extra is not installed: pip install 'retauth[kiosk]'"
)

from starlette.testclient import TestClient

from biometrics.kiosk.app import KioskSettings, create_app
from biometrics.kiosk.capture import FolderSource
from biometrics.kiosk.operator import OperatorGate, OperatorToken
from tests.kiosk.conftest import FakeBackend, encode, synthetic_fundus

TOKEN = "correct-horse-battery"
#: Headers of an enrolment as the kiosk page sends it.
ENROL_HEADERS = {"X-Operator-Token": TOKEN, "Content-Type": "application/json"}


def make_client(backend: FakeBackend, **overrides: object) -> TestClient:
    """A client that labels its bodies as the page does (photographs as image/png)."""
    settings = KioskSettings(operator=OperatorGate(OperatorToken(TOKEN)), **overrides)
    return TestClient(
        create_app(backend, settings),
        base_url="http://127.0.0.1",
        headers={"Content-Type": "image/png"},
    )


@pytest.fixture
def client(backend: FakeBackend) -> TestClient:
    return make_client(backend)


def enrol(client: TestClient, user_id: str, person: int, token: str = TOKEN):
    images = [base64.b64encode(encode(synthetic_fundus(person, c))).decode() for c in (0, 5)]
    return client.post(
        "/api/enrol",
        content=json.dumps({"user_id": user_id, "images": images}),
        headers={**ENROL_HEADERS, "X-Operator-Token": token},
    )


def verify(client: TestClient, person: int, user_id: str | None = None, **headers: str):
    params = {"user_id": user_id} if user_id else {}
    return client.post(
        "/api/verify", params=params, content=encode(synthetic_fundus(person, 7)), headers=headers
    )


def test_enrol_then_verify_genuine_and_impostor(client: TestClient) -> None:
    response = enrol(client, "alice", person=1)
    assert response.status_code == 200
    assert response.json() == {"user_id": "alice", "references": 2}

    genuine = verify(client, 1, "alice").json()
    assert genuine["decision"] == "accepted" and genuine["user_id"] == "alice"
    assert genuine["overlay_png"].startswith("data:image/png;base64,")
    assert "score" not in genuine  # scores are for the operator only

    impostor = verify(client, 2, "alice").json()
    assert impostor["decision"] == "rejected" and impostor["mode"] == "1:1"


def test_identification_reveals_only_the_matched_id(client: TestClient) -> None:
    enrol(client, "alice", person=1)
    enrol(client, "bob", person=2)
    assert verify(client, 2).json()["user_id"] == "bob"
    stranger = verify(client, 9).json()
    assert stranger["decision"] == "rejected" and stranger["user_id"] is None
    text = json.dumps({k: v for k, v in stranger.items() if k != "overlay_png"})
    assert "alice" not in text and "bob" not in text


def test_unknown_and_locked_ids_look_like_a_rejection(backend: FakeBackend) -> None:
    client = make_client(backend)
    enrol(client, "alice", person=1)
    backend.locked.add("alice")
    unknown = verify(client, 1, "nobody").json()
    locked = verify(client, 1, "alice").json()
    assert {k: unknown[k] for k in ("decision", "mode")} == {
        k: locked[k] for k in ("decision", "mode")
    }
    assert set(unknown) == set(locked)


def test_operator_gets_score_and_reason(client: TestClient) -> None:
    enrol(client, "alice", person=1)
    body = verify(client, 2, "alice", **{"X-Operator-Token": TOKEN}).json()
    assert body["reason"] == "no_match" and body["score"] < body["threshold"]


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"", "empty"),
        (b"not an image at all", "not a recognised image"),
        (encode(synthetic_fundus(1))[:500], "truncated"),
    ],
)
def test_bad_upload_is_a_400_with_one_line(
    client: TestClient, content: bytes, fragment: str
) -> None:
    response = client.post("/api/verify", content=content)
    assert response.status_code == 400
    error = response.json()["error"]
    assert fragment in error and "\n" not in error


def test_failure_to_acquire_is_422(client: TestClient) -> None:
    dark = synthetic_fundus(1) // 10
    response = client.post("/api/verify", content=encode(dark))
    assert response.status_code == 422
    assert "no retina" in response.json()["error"]


def test_malformed_user_id_is_400(client: TestClient) -> None:
    response = verify(client, 1, "../etc")
    assert response.status_code == 400


def test_oversized_upload_is_refused_before_decoding(backend: FakeBackend) -> None:
    client = make_client(backend, max_upload_bytes=1000)
    response = client.post("/api/verify", content=encode(synthetic_fundus(1)))
    assert response.status_code == 413


def test_image_over_the_pixel_limit_is_refused_before_decoding(backend: FakeBackend) -> None:
    client = make_client(backend, max_pixels=200 * 200)
    response = client.post("/api/verify", content=encode(synthetic_fundus(1)))  # 256x256
    assert response.status_code == 400
    assert response.json()["error"] == "upload: 256x256 exceeds the 40000 pixel limit"


@pytest.mark.parametrize("token", ["", "wrong-token-value"])
def test_enrol_needs_the_operator_token(client: TestClient, token: str) -> None:
    assert enrol(client, "mallory", person=3, token=token).status_code == 401
    assert verify(client, 3).json()["decision"] == "rejected"


def test_enrol_is_disabled_without_a_configured_token(backend: FakeBackend) -> None:
    client = TestClient(create_app(backend, KioskSettings()), base_url="http://127.0.0.1")
    assert enrol(client, "alice", person=1).status_code == 403
    assert client.get("/api/config").json()["operator"] is False


def test_repeated_wrong_tokens_lock_operator_mode(client: TestClient) -> None:
    for _ in range(5):
        assert enrol(client, "x", person=3, token="guess-guess-guess").status_code == 401
    assert enrol(client, "alice", person=1).status_code == 401  # even the right one, for now


@pytest.mark.parametrize(
    "payload",
    [
        "not json",
        json.dumps({"images": ["aGk="]}),
        json.dumps({"user_id": "a", "images": []}),
        json.dumps({"user_id": "a", "images": ["%%%"]}),
        json.dumps({"user_id": "a", "images": ["aGk="] * 6}),
    ],
)
def test_malformed_enrolment_is_400(client: TestClient, payload: str) -> None:
    response = client.post("/api/enrol", content=payload, headers=ENROL_HEADERS)
    assert response.status_code == 400


def test_duplicate_enrolment_is_400(client: TestClient) -> None:
    assert enrol(client, "alice", person=1).status_code == 200
    assert "already enrolled" in enrol(client, "alice", person=1).json()["error"]


def test_foreign_host_header_is_refused(client: TestClient) -> None:
    """A DNS-rebinding page reaches the loopback port under its own name: refuse it."""
    assert client.get("/healthz", headers={"Host": "evil.example"}).status_code == 400


def test_page_and_assets_are_served_with_a_strict_policy(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and 'id="go-verify"' in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert client.get("/static/kiosk.js").status_code == 200
    assert client.get("/static/../app.py").status_code == 404


def test_health_and_metrics_count_requests(client: TestClient) -> None:
    enrol(client, "alice", person=1)
    verify(client, 1, "alice")
    verify(client, 2, "alice")
    client.post("/api/verify", content=b"junk")
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["backend"] == "fake" and health["in_flight"] == 0
    text = client.get("/metrics").text
    assert 'retauth_kiosk_requests_total{endpoint="verify",outcome="accepted"} 1' in text
    assert 'retauth_kiosk_requests_total{endpoint="verify",outcome="no_match"} 1' in text
    assert 'retauth_kiosk_requests_total{endpoint="verify",outcome="bad_request"} 1' in text
    assert 'retauth_kiosk_latency_seconds{endpoint="verify",quantile="0.95"}' in text


def test_overload_answers_503_and_never_fails(backend: FakeBackend) -> None:
    backend.delay_s = 0.4  # long enough that all 6 requests arrive while 2 are admitted
    client = make_client(backend, workers=1, max_queue=1)
    enrol(client, "alice", person=1)
    statuses: list[int] = []

    def hit() -> None:
        statuses.append(verify(client, 1, "alice").status_code)

    threads = [threading.Thread(target=hit) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(set(statuses)) == [200, 503]
    assert statuses.count(200) >= 2  # one running + one queued were always admitted
    assert client.get("/healthz").json()["in_flight"] == 0


def test_no_image_reaches_disk_unless_debugging(
    backend: FakeBackend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    enrol(make_client(backend), "alice", person=1)
    verify(make_client(backend), 1, "alice")
    assert list(tmp_path.iterdir()) == []

    debug = tmp_path / "debug"
    debug.mkdir()
    verify(make_client(backend, debug_save_dir=debug), 1, "alice")
    assert sorted(p.name.split("-")[-1] for p in debug.iterdir()) == ["overlay.png", "probe.png"]


def test_scanner_folder_replaces_uploads(backend: FakeBackend, tmp_path: Path) -> None:
    client = make_client(backend, capture=FolderSource(tmp_path), allow_upload=False)
    assert client.get("/api/config").json()["scanner"] == "folder"
    (tmp_path / "scan.png").write_bytes(encode(synthetic_fundus(1, 0)))
    response = client.post(
        "/api/enrol",
        content=json.dumps({"user_id": "alice", "scans": 2}),
        headers=ENROL_HEADERS,
    )
    assert response.json() == {"user_id": "alice", "references": 2}
    (tmp_path / "scan.png").write_bytes(encode(synthetic_fundus(1, 7)))
    scanned = client.post("/api/verify", params={"user_id": "alice", "source": "device"})
    assert scanned.json()["decision"] == "accepted"
    uploaded = verify(client, 1, "alice")
    assert uploaded.status_code == 400 and "uploads are disabled" in uploaded.json()["error"]


def test_device_source_without_a_scanner_is_400(client: TestClient) -> None:
    response = client.post("/api/verify", params={"source": "device"})
    assert response.status_code == 400 and "no scanner" in response.json()["error"]


def test_backend_crash_is_a_500_and_the_kiosk_keeps_serving(
    backend: FakeBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = make_client(backend)
    enrol(client, "alice", person=1)

    def crash(rgb: object, user_id: object) -> None:
        raise RuntimeError("segfault-ish /secret/path")

    with monkeypatch.context() as patch:
        patch.setattr(backend, "verify", crash)
        response = verify(client, 1, "alice")
    assert response.status_code == 500 and "/secret" not in response.text
    assert verify(client, 1, "alice").json()["decision"] == "accepted"
    assert client.get("/healthz").json()["in_flight"] == 0
