"""The ``retauth`` commands: decisions, exit codes, ``--json`` and bad input on synthetic eyes."""

import hashlib
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from synthetic import fundus
from typer.testing import CliRunner

from biometrics.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("images")
    out = {}
    for name, image in {
        "a1": fundus(0)[0],
        "a2": fundus(0, angle=8, shift=(12, -9))[0],
        "b1": fundus(1)[0],
    }.items():
        out[name] = folder / f"{name}.jpg"
        cv2.imwrite(str(out[name]), image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 92])
    jpeg = out["a1"].read_bytes()
    (folder / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 3])
    (folder / "notes.jpg").write_text("not an image")
    cv2.imwrite(str(folder / "gray.png"), fundus(0)[0][..., 1])
    cv2.imwrite(str(folder / "tiny.png"), np.zeros((1, 1, 3), np.uint8))
    for name in ("truncated", "notes"):
        out[name] = folder / f"{name}.jpg"
    out["gray"], out["tiny"] = folder / "gray.png", folder / "tiny.png"
    out["missing"] = folder / "absent.jpg"
    return out


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("RETAUTH_HOME", str(tmp_path))
    monkeypatch.delenv("RETAUTH_KEY", raising=False)
    monkeypatch.setenv("RETAUTH_CONFIG", str(tmp_path / "absent.toml"))
    return tmp_path


def run(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def db_hash(home: Path) -> str:
    return hashlib.sha256((home / "retauth.db").read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def enrolled_store(tmp_path_factory, images) -> Path:
    """A store with alice enrolled, made once per module (an enrolment runs the pipeline)."""
    folder = tmp_path_factory.mktemp("enrolled")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("RETAUTH_HOME", str(folder))
        env.delenv("RETAUTH_KEY", raising=False)
        env.setenv("RETAUTH_CONFIG", str(folder / "absent.toml"))
        result = run("enroll", "--user", "alice", images["a1"], "--json")
    assert result.exit_code == 0, result.output
    return folder


@pytest.fixture
def enrolled(home, enrolled_store):
    """A private copy of the enrolled store (database and key file) for one test."""
    shutil.copytree(enrolled_store, home, dirs_exist_ok=True)
    return home


def test_enroll_reports_json(enrolled):
    result = run("users", "list", "--json")
    assert result.exit_code == 0
    assert "alice" in result.output


def test_verify_genuine_accepts(enrolled, images):
    result = run("verify", "--user", "alice", images["a2"], "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert payload["accepted"] is True and payload["mode"] == "1:1"
    assert payload["score"] >= payload["threshold"]
    assert set(payload["timings_ms"]) >= {"segment_ms", "features_ms", "match_ms"}


def test_verify_impostor_rejects(enrolled, images):
    result = run("verify", "--user", "alice", images["b1"])
    assert result.exit_code == 1
    assert "REJECT" in result.output and "threshold" in result.output


def test_identify_finds_alice_and_rejects_stranger(enrolled, images):
    found = run("verify", images["a2"], "--json")
    assert found.exit_code == 0, found.output
    assert json.loads(found.output)["user"] == "alice"
    stranger = run("verify", images["b1"])
    assert stranger.exit_code == 1
    assert "no match" in stranger.output


def test_delete_then_verify_is_unknown(enrolled, images):
    assert run("users", "delete", "--user", "alice").exit_code == 0
    result = run("verify", "--user", "alice", images["a2"])
    assert result.exit_code == 2


@pytest.mark.parametrize("bad", ["missing", "notes", "truncated", "gray", "tiny"])
def test_bad_probe_is_exit_2_and_leaves_db_unchanged(enrolled, images, bad):
    before = db_hash(enrolled)
    result = run("verify", "--user", "alice", images[bad])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.output
    assert str(images[bad].parent) not in result.output  # no probe path leaks into messages
    assert db_hash(enrolled) == before


@pytest.mark.parametrize("bad", ["missing", "notes", "truncated", "gray", "tiny"])
def test_bad_enrolment_image_stores_nothing(enrolled, images, bad):
    before = db_hash(enrolled)
    result = run("enroll", "--user", "bob", images["b1"], images[bad])
    assert result.exit_code == 2
    assert db_hash(enrolled) == before


def test_duplicate_enrolment_is_refused(enrolled, images):
    before = db_hash(enrolled)
    result = run("enroll", "--user", "alice", images["b1"], "--json")
    assert result.exit_code == 2
    assert json.loads(result.output)["ok"] is False
    assert db_hash(enrolled) == before


def test_unknown_user_is_exit_2(enrolled, images):
    result = run("verify", "--user", "mallory", images["a2"])
    assert result.exit_code == 2
    assert "mallory" in result.output or "not enrolled" in result.output


def test_failure_to_acquire_on_blurred_capture(home, tmp_path):
    path = tmp_path / "blur.png"
    cv2.imwrite(str(path), fundus(0, blur=6)[0][..., ::-1])
    result = run("enroll", "--user", "carol", path)
    assert result.exit_code == 2
    assert "failure to acquire" in result.output


def test_inspect_writes_overlay(home, images, tmp_path):
    out = tmp_path / "overlay.png"
    result = run("inspect", images["a1"], "--out", out, "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert payload["counts"]["bifurcation"] > 5
    assert payload["template_bytes"] <= 4096
    assert cv2.imread(str(out)) is not None


@pytest.mark.slow
def test_demo_accepts_genuine_and_rejects_impostor():
    result = run("demo", "--json")
    assert result.exit_code == 0, result.output
    steps = json.loads(result.output)["steps"]
    assert [s.get("accepted") for s in steps[1:]] == [True, False, True]


def test_unknown_backend_is_a_usage_error(home, images):
    result = run("verify", "--user", "alice", images["a1"], "--backend", "quantum")
    assert result.exit_code == 2
