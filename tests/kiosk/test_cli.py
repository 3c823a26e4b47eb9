"""``retauth kiosk`` wiring: options reach the app, bad combinations exit 2 before serving."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip(
    "uvicorn", reason="the kiosk extra is not installed: pip install 'retauth[kiosk]'"
)
pytest.importorskip(
    "starlette", reason="the kiosk extra is not installed: pip install 'retauth[kiosk]'"
)

import uvicorn
from starlette.testclient import TestClient
from typer.testing import CliRunner

from biometrics.cli import app


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, Any]:
    """Replace uvicorn.run so the command returns instead of serving; keep what it got."""
    monkeypatch.setenv("RETAUTH_HOME", str(tmp_path))
    monkeypatch.delenv("RETAUTH_CONFIG", raising=False)
    monkeypatch.delenv("RETAUTH_OPERATOR_TOKEN", raising=False)
    seen: dict[str, Any] = {}
    monkeypatch.setattr(
        uvicorn, "run", lambda application, **kw: seen.update(app=application, **kw)
    )
    return seen


def test_kiosk_serves_loopback_with_the_loaded_backend(
    served: dict[str, Any], tmp_path: Path
) -> None:
    token = tmp_path / "token"
    token.write_text("operator-token-123")
    token.chmod(0o600)
    result = CliRunner().invoke(
        app, ["kiosk", "--backend", "classical", "--operator-token-file", str(token), "--port", "9"]
    )
    assert result.exit_code == 0, result.output
    assert "enrolment=on" in result.output
    assert (served["host"], served["port"], served["access_log"]) == ("127.0.0.1", 9, False)
    client = TestClient(served["app"], base_url="http://127.0.0.1")
    assert client.get("/healthz").json()["backend"] == "classical"
    assert client.get("/api/config").json()["operator"] is True


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--no-upload"], "needs --camera or --watch-folder"),
        (["--camera", "0", "--watch-folder", "."], "not both"),
        (["--operator-token-file", "/nonexistent/token"], "cannot be read"),
    ],
)
def test_bad_options_exit_2_without_serving(
    served: dict[str, Any], args: list[str], message: str
) -> None:
    result = CliRunner().invoke(app, ["kiosk", "--backend", "classical", *args])
    assert result.exit_code == 2
    assert message in result.output
    assert "app" not in served
