"""User id validation and pseudonyms."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from enrollment.errors import InvalidUserId
from enrollment.ids import normalize_user_id, pseudonym


@pytest.mark.parametrize(
    "good", ["alice", "a", "bob.smith@example.org", "x_1-2", "Zoë", "李雷", "a" * 64]
)
def test_accepted(good: str) -> None:
    assert normalize_user_id(good) == good


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "a" * 65,
        "../etc/passwd",
        "a/b",
        "a\\b",
        "..",
        ".hidden",
        "-rf",
        "a b",
        "a\x00b",
        "a\nb",
        "tab\t",
        "semi;colon",
        "quote'",
        "emoji😀",
        "zero\u200bwidth",
        "\u202eabc",
    ],
)
def test_refused(bad: str) -> None:
    with pytest.raises(InvalidUserId) as info:
        normalize_user_id(bad)
    assert "\n" not in str(info.value)


def test_nfc_normalised() -> None:
    decomposed = "Zoe\u0308"  # e + combining diaeresis
    assert normalize_user_id(decomposed) == "Zoë"


def test_pseudonym_depends_on_deployment_secret() -> None:
    assert pseudonym(b"a" * 32, "alice") != pseudonym(b"b" * 32, "alice")
    assert pseudonym(b"a" * 32, "alice") != pseudonym(b"a" * 32, "Alice")
    assert len(pseudonym(b"a" * 32, "alice")) == 64


@given(st.text(max_size=80))
def test_arbitrary_text_is_accepted_only_when_safe(text: str) -> None:
    try:
        uid = normalize_user_id(text)
    except InvalidUserId:
        return
    assert 1 <= len(uid) <= 64
    assert "/" not in uid and "\\" not in uid and uid not in (".", "..")
    assert not uid.startswith(("-", "."))
    assert all(c.isalnum() or c in "._@-" for c in uid)
