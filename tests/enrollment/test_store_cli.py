"""``retauth users|keys|audit|db``: exit codes, ``--json``, one-line errors, unchanged DB."""

from __future__ import annotations

import base64
import json
import unicodedata

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sqlalchemy import update
from typer.testing import CliRunner

from biometrics.cli import app
from biometrics.settings import load_settings
from enrollment import TemplateStore
from enrollment.db import normalize_url
from enrollment.models import AuditEvent

T = b"graph-template" * 20
runner = CliRunner()


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def run_json(*args: str) -> tuple[int, dict]:
    code, out = run(*args, "--json")
    return code, json.loads(out)


@pytest.fixture
def url(sqlite_url: str) -> str:
    with TemplateStore.open(load_settings(db_url=sqlite_url)) as store:
        store.enroll("alice", [T, T])
        store.enroll("bob", [T])
    return sqlite_url


def test_users_list(url: str) -> None:
    code, out = run("users", "list", "--db", url)
    assert code == 0 and "alice  2 template(s)" in out and "bob  1 template(s)" in out
    code, doc = run_json("users", "list", "--db", url)
    assert code == 0 and [u["user"] for u in doc["users"]] == ["alice", "bob"]


def test_db_option_accepts_plain_path(url: str) -> None:
    code, doc = run_json("users", "list", "--db", url.removeprefix("sqlite:///"))
    assert code == 0 and len(doc["users"]) == 2


def test_users_list_empty(sqlite_url: str) -> None:
    TemplateStore.open(load_settings(db_url=sqlite_url)).close()
    assert run("users", "list", "--db", sqlite_url) == (0, "no users enrolled\n")


def test_users_delete_and_revoke(url: str) -> None:
    assert run_json("users", "delete", "--user", "bob", "--db", url) == (
        0,
        {"ok": True, "user": "bob", "action": "delete"},
    )
    assert run("users", "revoke", "--user", "alice", "--db", url)[0] == 0
    code, doc = run_json("users", "list", "--db", url)
    assert [(u["user"], u["status"], u["n_templates"]) for u in doc["users"]] == [
        ("alice", "revoked", 0)
    ]


@pytest.mark.parametrize(
    ("user", "message"),
    [
        ("mallory", "unknown user mallory"),
        ("../../etc/passwd", "user id may contain only"),
        ("-rf", "may not start with"),
        ("a" * 65, "1 to 64 characters"),
        ("名前\u202e", "U+202E"),
    ],
)
@pytest.mark.parametrize("command", ["delete", "revoke", "unlock"])
def test_bad_user_is_exit_2_and_changes_nothing(
    url: str, snapshot, user: str, message: str, command: str
) -> None:
    before = snapshot(url)
    code, out = run("users", command, "--user", user, "--db", url)
    assert code == 2 and message in out and out.count("\n") == 1
    code, doc = run_json("users", command, "--user", user, "--db", url)
    assert code == 2 and doc["ok"] is False and doc["exit_code"] == 2
    assert snapshot(url) == before


def test_wrong_key_is_exit_3_without_secret(url: str, monkeypatch) -> None:
    wrong = base64.b64encode(b"\x07" * 32).decode()
    monkeypatch.setenv("RETAUTH_KEY", wrong)
    code, out = run("users", "list", "--db", url)
    assert code == 3 and "cannot open the store" in out
    assert wrong not in out and out.count("\n") == 1


def test_insecure_key_file_is_exit_3(url: str, isolated_env) -> None:
    (isolated_env / "retauth.key").chmod(0o644)
    code, out = run("users", "list", "--db", url)
    assert code == 3 and "chmod 600" in out


def test_keys_rotate_list_retire(url: str, isolated_env) -> None:
    code, doc = run_json("keys", "list", "--db", url)
    assert code == 0 and len(doc["keys"]) == 1 and doc["keys"][0]["records"] == 6
    old = doc["keys"][0]["key_id"]
    code, rotated = run_json("keys", "rotate", "--db", url)
    assert code == 0 and rotated["reencrypted"] == 6 and rotated["key_id"] != old
    assert run("keys", "retire", rotated["key_id"], "--db", url)[0] == 2  # the primary
    code, doc = run_json("keys", "retire", old, "--db", url)
    assert code == 0 and doc["removed_from_source"]
    code, doc = run_json("keys", "list", "--db", url)
    assert [k["key_id"] for k in doc["keys"]] == [rotated["key_id"]]
    material = json.loads((isolated_env / "retauth.key").read_text())["keys"][0]["key"]
    assert material not in json.dumps(doc)


def test_audit_verify_and_list(url: str) -> None:
    code, out = run("audit", "verify", "--db", url)
    assert code == 0 and "audit log intact: 3 events" in out
    code, doc = run_json("audit", "list", "--db", url, "--limit", "2")
    assert code == 0 and [e["event"] for e in doc["events"]] == ["enroll", "enroll"]
    with TemplateStore.open(load_settings(db_url=url)) as store, store.engine.begin() as conn:
        conn.execute(update(AuditEvent).where(AuditEvent.seq == 2).values(detail="9 templates"))
    code, doc = run_json("audit", "verify", "--db", url)
    assert code == 3 and not doc["ok"] and "event 2" in doc["problems"][0]
    code, out = run("audit", "verify", "--db", url)
    assert code == 3 and "BROKEN" in out


def test_db_commands(sqlite_url: str) -> None:
    code, doc = run_json("db", "current", "--db", sqlite_url)
    assert code == 0 and doc["current"] is None and not doc["up_to_date"]
    code, doc = run_json("db", "upgrade", "--db", sqlite_url)
    assert code == 0 and doc["current"] == doc["head"] == "0002"
    code, out = run("db", "downgrade", "base", "--db", sqlite_url)
    assert code == 2 and "--yes" in out
    code, doc = run_json("db", "downgrade", "base", "--yes", "--db", sqlite_url)
    assert code == 0 and doc["current"] is None


def test_unreachable_database_is_exit_3(tmp_path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    code, out = run("users", "list", "--db", str(blocker / "sub" / "x.db"))
    assert code == 3 and out.count("\n") == 1


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(user=st.text(max_size=80))
def test_fuzzed_user_ids_are_refused_cleanly(url: str, snapshot, user: str) -> None:
    """Arbitrary text as --user: exit 2 with one line (unknown or invalid), DB unchanged."""
    assume(unicodedata.normalize("NFKC", user) not in {"alice", "bob"})
    before = snapshot(url)
    code, out = run("users", "revoke", "--user", user, "--db", url)
    assert code == 2
    if not user.startswith("-"):  # otherwise the option parser answers with its usage text
        assert out.count("\n") == 1 and out.startswith("error:")
    assert snapshot(url) == before


def test_postgres_url_uses_psycopg_driver() -> None:
    assert normalize_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_url("sqlite:///x.db") == "sqlite:///x.db"
