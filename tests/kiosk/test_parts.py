"""Unit tests of the kiosk's parts: admission, metrics, operator token, capture sources."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path

import pytest

from biometrics.errors import FailureToAcquire, InputError
from biometrics.kiosk.admission import BoundedExecutor, Overloaded
from biometrics.kiosk.capture import CameraSource, FolderSource
from biometrics.kiosk.metrics import Metrics
from biometrics.kiosk.operator import OperatorGate, OperatorToken, load_operator_token
from biometrics.settings import Settings
from tests.kiosk.conftest import encode, synthetic_fundus


def test_executor_refuses_beyond_workers_plus_queue() -> None:
    executor = BoundedExecutor(workers=1, max_queue=1)
    release = threading.Event()

    async def admitted_job() -> bool:
        with executor.admit() as slot:
            return await slot.run(release.wait)

    async def scenario() -> list[bool]:
        jobs = [asyncio.ensure_future(admitted_job()) for _ in range(2)]
        await asyncio.sleep(0.05)
        with pytest.raises(Overloaded):
            executor.admit()
        assert executor.in_flight == 2
        release.set()
        return await asyncio.gather(*jobs)

    assert asyncio.run(scenario()) == [True, True]
    assert executor.in_flight == 0
    executor.shutdown()


def test_slot_is_released_on_error_and_when_no_job_ran() -> None:
    executor = BoundedExecutor(workers=1, max_queue=0)

    def boom() -> None:
        raise RuntimeError("x")

    async def scenario() -> None:
        for _ in range(3):
            with pytest.raises(RuntimeError), executor.admit() as slot:
                await slot.run(boom)
        with pytest.raises(ValueError), executor.admit():
            raise ValueError("bad body, rejected before any job")

    asyncio.run(scenario())
    assert executor.in_flight == 0
    executor.shutdown()


def test_metrics_quantiles_and_text() -> None:
    metrics = Metrics(window=100)
    for ms in range(1, 201):
        metrics.observe("verify", "accepted", ms / 1000)
    metrics.observe("verify", "busy")
    q = metrics.quantiles("verify")
    assert q[0.5] == pytest.approx(0.1505, abs=1e-3)  # window keeps the last 100: 101..200 ms
    text = metrics.render({"in_flight": 0})
    assert 'retauth_kiosk_requests_total{endpoint="verify",outcome="busy"} 1' in text
    assert "retauth_kiosk_in_flight 0" in text


def test_token_file_must_be_private(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("s3cret-operator\n")
    path.chmod(0o644)
    with pytest.raises(InputError, match="chmod 600"):
        load_operator_token(path)
    path.chmod(0o600)
    token = load_operator_token(path)
    assert token is not None and token.matches("s3cret-operator")
    assert "s3cret" not in repr(token)


def test_token_from_environment_and_minimum_length(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RETAUTH_OPERATOR_TOKEN", raising=False)
    assert load_operator_token() is None
    monkeypatch.setenv("RETAUTH_OPERATOR_TOKEN", "1234")
    with pytest.raises(InputError, match="at least"):
        load_operator_token()


def test_token_comes_from_the_resolved_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RETAUTH_OPERATOR_TOKEN", raising=False)
    token = load_operator_token(None, Settings(operator_token="from-settings"))
    assert token is not None and token.matches("from-settings")
    assert load_operator_token(None, Settings()) is None


def test_gate_locks_after_repeated_failures_then_recovers() -> None:
    gate = OperatorGate(OperatorToken("right-token"), max_failures=2, lockout_s=0.2)
    assert gate.check("right-token", "kiosk")
    assert not gate.check(None, "kiosk")  # no token is not a guess
    assert not gate.check("wrong-1", "kiosk") and not gate.check("wrong-2", "kiosk")
    assert not gate.check("right-token", "kiosk")
    time.sleep(0.25)
    assert gate.check("right-token", "kiosk")


def test_folder_source_takes_only_a_fresh_capture(tmp_path: Path) -> None:
    source = FolderSource(tmp_path, max_age_s=30)
    with pytest.raises(FailureToAcquire, match="no capture"):
        source.capture()
    old, new = tmp_path / "old.png", tmp_path / "new.png"
    old.write_bytes(encode(synthetic_fundus(1)))
    new.write_bytes(encode(synthetic_fundus(2)))
    os.utime(old, (time.time() - 5, time.time() - 5))
    assert (source.capture() == synthetic_fundus(2)).all()
    os.utime(new, (time.time() - 60, time.time() - 60))
    os.utime(old, (time.time() - 60, time.time() - 60))
    with pytest.raises(FailureToAcquire, match="no fresh capture"):
        source.capture()


def test_missing_camera_is_a_failure_to_acquire() -> None:
    camera = CameraSource(97)  # no such device here or on CI
    with pytest.raises(FailureToAcquire, match="camera 97"):
        camera.capture()
    camera.close()
