"""User ids: what is accepted, and the keyed pseudonym under which a user is stored.

An id is 1–64 characters after Unicode NFC normalisation, made of letters and decimal digits
of any script plus ``. _ @ -``; it may not start with ``-`` or ``.`` (so it can never be read
as a command-line option or a relative path such as ``..``). Ids are case-sensitive. Anything
else (separators, whitespace, control or format characters, symbols) is refused rather than
silently rewritten, because two spellings of one person must not become two identities.

The database never holds the id itself: rows are keyed by an HMAC-SHA256 pseudonym under a
per-deployment secret, so the same person enrolled in two deployments cannot be linked by
id, and a stolen database does not reveal who is enrolled without the key.
"""

from __future__ import annotations

import hashlib
import hmac
import unicodedata

from enrollment.errors import InvalidUserId

MAX_LENGTH = 64
_PUNCTUATION = frozenset("._@-")
_ALLOWED_CATEGORIES = frozenset({"Lu", "Ll", "Lt", "Lm", "Lo", "Nd"})


def normalize_user_id(user_id: str) -> str:
    """Return the NFC form of a valid id, or raise :class:`InvalidUserId` saying why."""
    if not isinstance(user_id, str):
        raise InvalidUserId("user id must be text")
    nfc = unicodedata.normalize("NFC", user_id)
    if not 1 <= len(nfc) <= MAX_LENGTH:
        raise InvalidUserId(f"user id must be 1 to {MAX_LENGTH} characters long")
    bad = next(
        (
            c
            for c in nfc
            if c not in _PUNCTUATION and unicodedata.category(c) not in _ALLOWED_CATEGORIES
        ),
        None,
    )
    if bad is not None:
        raise InvalidUserId(
            f"user id may contain only letters, digits and . _ @ - (found U+{ord(bad):04X})"
        )
    if nfc[0] in ".-":
        raise InvalidUserId("user id may not start with '.' or '-'")
    return nfc


def pseudonym(secret: bytes, user_id: str) -> str:
    """Keyed pseudonym (64 hex chars) of a *normalised* id under the deployment secret."""
    return hmac.new(secret, b"user\x00" + user_id.encode(), hashlib.sha256).hexdigest()
