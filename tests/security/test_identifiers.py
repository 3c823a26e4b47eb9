"""Look-alike ids (issue 14 item 8): the identifier profile of :mod:`enrollment.ids`.

Before the profile, every id below except the ASCII controls was accepted as a new identity
that displays as "alice", as another Latin id, or as nothing at all.
"""

from __future__ import annotations

import hashlib
import hmac
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from enrollment.errors import InvalidUserId
from enrollment.ids import normalize_user_id, pseudonym

SECRET = b"s" * 32

#: (id, why it must be refused) — each displays like another id or like nothing.
REFUSED = [
    ("alice\u3164", "Hangul filler after a Latin id"),
    ("\u3164", "Hangul filler alone"),
    ("\u115f", "Hangul choseong filler"),
    ("\u1160bob", "Hangul jungseong filler"),
    ("ali\uffa0ce", "halfwidth Hangul filler"),
    ("\u0430lice", "Cyrillic a in a Latin id"),
    ("p\u0430yp\u0430l", "Cyrillic a twice in a Latin id"),
    ("ze\u03bfs", "Greek omicron in a Latin id"),
    ("\u0430\u0440\u0435", "all-Cyrillic look-alike of 'ape'"),
    ("\u0421\u0415\u041e", "all-Cyrillic look-alike of 'CEO'"),
    ("\u0391\u0392\u0395", "all-Greek look-alike of 'ABE'"),
    ("\u0430lice\u200b", "Cyrillic a and a zero-width space"),
    ("\u5c71\u0430", "Han with Cyrillic"),
    ("alice\u0660", "Arabic-Indic digit in a Latin id"),
]

#: id → the form it is stored under (NFKC folds compatibility characters).
FOLDED = {
    "\uff41lice": "alice",  # fullwidth a
    "\uff21\uff2c\uff29\uff23\uff25": "ALICE",
    "\ufb01le": "file",  # fi ligature
    "Zoe\u0308": "Zoë",  # combining diaeresis composed
}

ACCEPTED = [
    "alice",
    "Zoë",
    "Сева",
    "алиса2",
    "山田たろう",
    "李lee",
    "김철수",
    "bob.smith@example.org",
]


@pytest.mark.parametrize(("user_id", "why"), REFUSED)
def test_look_alike_ids_are_refused(user_id: str, why: str) -> None:
    with pytest.raises(InvalidUserId) as info:
        normalize_user_id(user_id)
    assert "\n" not in str(info.value), why


@pytest.mark.parametrize("user_id", sorted(FOLDED))
def test_compatibility_forms_fold_to_one_identity(user_id: str) -> None:
    folded = normalize_user_id(user_id)
    assert folded == FOLDED[user_id] == normalize_user_id(folded)
    assert pseudonym(SECRET, folded) == pseudonym(SECRET, FOLDED[user_id])


@pytest.mark.parametrize("user_id", ACCEPTED)
def test_ids_in_one_script_are_accepted(user_id: str) -> None:
    assert normalize_user_id(user_id) == user_id


@given(st.text(alphabet=string.ascii_letters + string.digits + "._@-", min_size=1, max_size=64))
def test_ascii_ids_keep_their_pseudonym(user_id: str) -> None:
    """Existing deployments keep their users: the profile leaves plain ASCII ids alone."""
    try:
        normalized = normalize_user_id(user_id)
    except InvalidUserId:
        assert user_id[0] in ".-"  # the only ASCII refusal, unchanged from before
        return
    before = hmac.new(SECRET, b"user\x00" + user_id.encode(), hashlib.sha256).hexdigest()
    assert normalized == user_id and pseudonym(SECRET, normalized) == before


@given(st.text(max_size=80))
def test_accepted_ids_are_single_script_and_visible(text: str) -> None:
    try:
        uid = normalize_user_id(text)
    except InvalidUserId:
        return
    assert normalize_user_id(uid) == uid
    assert not set(uid) & set("\u115f\u1160\u3164\uffa0")
    assert not ({"\u0430", "\u0435", "\u043e"} & set(uid) and set(uid) & set(string.ascii_letters))
