"""``retauth dedup`` finds one eye enrolled under two ids, in process and on Dask."""

from __future__ import annotations

import json

import pytest
from eyes import templates
from typer.testing import CliRunner

from biometrics.cli import app
from biometrics.engine import Engine
from matching import DEFAULT_THRESHOLD


@pytest.fixture
def enrolled(store, db_url, monkeypatch) -> str:
    t = templates()
    engine = Engine(store, threshold=DEFAULT_THRESHOLD)
    for i in range(4):
        engine.enroll(f"user{i}", [t[f"eye{i}"]])
    monkeypatch.setenv("RETAUTH_DB_URL", db_url)
    return db_url


def _dedup(*args: str) -> tuple[int, dict]:
    result = CliRunner().invoke(app, ["dedup", "--json", *args])
    return result.exit_code, json.loads(result.stdout)


def test_clean_store_exit_0(enrolled) -> None:
    code, out = _dedup()
    assert code == 0 and out["duplicates"] == [] and out["captures"] == 4


@pytest.mark.slow
@pytest.mark.parametrize("args", [(), ("--dask", "2")])
def test_twin_enrolment_found(enrolled, store, args) -> None:
    pytest.importorskip("distributed")
    Engine(store, threshold=DEFAULT_THRESHOLD).enroll("twin", [templates()["eye1-moved"]])
    code, out = _dedup(*args)
    assert code == 1
    assert [sorted(d["users"]) for d in out["duplicates"]] == [["twin", "user1"]]
    assert out["duplicates"][0]["score"] >= DEFAULT_THRESHOLD


def test_protected_store_is_refused_without_writing(store, db_url, monkeypatch) -> None:
    """dedup only reads: it refuses a protected store in one line (exit 2), and with the
    protected setting on an empty store it neither fails nor claims the store's kind."""
    from biometrics.service import open_engine
    from biometrics.settings import load_settings

    monkeypatch.setenv("RETAUTH_DB_URL", db_url)
    monkeypatch.setenv("RETAUTH_PROTECTED_TEMPLATES", "1")
    events = len(store.audit_events())
    code, out = _dedup()
    assert code == 0 and out["captures"] == 0
    assert store.protected_generation() is None and len(store.audit_events()) == events
    open_engine(store, load_settings(protected_templates=True)).enroll(
        "alice", [templates()["eye0"]]
    )
    code, out = _dedup()
    assert code == 2 and "protected references" in out["error"]
