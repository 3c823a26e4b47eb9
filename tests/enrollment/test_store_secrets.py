"""No key, template plaintext or clear user id in logs or error messages."""

from __future__ import annotations

import base64
import logging

import pytest
from claims import settle
from sqlalchemy import text, update

from biometrics.errors import RetauthError
from biometrics.settings import load_settings
from enrollment import TemplateStore
from enrollment.models import TemplateRecord
from enrollment.rotation import rotate

KEY = b"\x5a" * 32
TEMPLATE = b"SECRET-TEMPLATE-BYTES" * 10


def _forbidden() -> list[str]:
    return [
        base64.b64encode(KEY).decode(),
        KEY.hex(),
        repr(KEY)[2:30],
        TEMPLATE[:21].decode(),
        TEMPLATE[:21].hex(),
    ]


def test_nothing_secret_in_logs_or_errors(fresh_url: str, monkeypatch, caplog) -> None:
    monkeypatch.setenv("RETAUTH_KEY", base64.b64encode(KEY).decode())
    caplog.set_level(logging.DEBUG)
    for name in ("sqlalchemy.engine", "alembic"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    messages: list[str] = []
    with TemplateStore.open(load_settings(db_url=fresh_url)) as store:
        store.enroll("carol", [TEMPLATE])
        settle(store, "carol", accepted=False, score=0.2)
        rotate(store)
        for attempt in (
            lambda: store.enroll("carol", [TEMPLATE]),
            lambda: store.templates("nobody"),
            lambda: store.enroll("../carol", [TEMPLATE]),
        ):
            with pytest.raises(RetauthError) as info:
                attempt()
            messages.append(str(info.value))
        with store.engine.begin() as conn:
            conn.execute(update(TemplateRecord).values(record=b"RTR\x01" + b"\x00" * 60))
        with pytest.raises(RetauthError) as info:
            store.templates("carol")
        messages.append(str(info.value))
        with store.engine.begin() as conn:
            conn.execute(text("DROP TABLE templates"))
        with pytest.raises(RetauthError) as info:
            store.enroll("dave", [TEMPLATE])
        messages.append(str(info.value))
    monkeypatch.setenv("RETAUTH_KEY", base64.b64encode(b"\x01" * 32).decode())
    with pytest.raises(RetauthError) as info:
        TemplateStore.open(load_settings(db_url=fresh_url))
    messages.append(str(info.value))
    haystack = caplog.text + "\n".join(messages)
    assert len(messages) == 6 and all("\n" not in m for m in messages)
    assert caplog.records  # SQL logging was really on
    for needle in _forbidden():
        assert needle not in haystack
    assert "carol" not in caplog.text  # the clear id never reaches the database layer
