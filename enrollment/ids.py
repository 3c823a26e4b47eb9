"""User ids: what is accepted, and the keyed pseudonym under which a user is stored.

An id is 1–64 characters after Unicode **NFKC** normalisation, made of letters and decimal
digits plus ``. _ @ -``; it may not start with ``-`` or ``.`` (so it can never be read as a
command-line option or a relative path such as ``..``). Ids are case-sensitive. Anything else
(separators, whitespace, control or format characters, symbols) is refused rather than
silently rewritten, because two spellings of one person must not become two identities.

On top of that, an identifier profile (after UTS #39, "highly restrictive") refuses ids that
*display* like another id or like nothing:

- compatibility forms are folded by NFKC (fullwidth ``ａlice`` is ``alice``);
- invisible letters are refused: the Hangul fillers U+115F, U+1160, U+3164 and U+FFA0 are
  category "Lo" but print as blank space;
- one script per id: ASCII digits and ``. _ @ -`` go with any script, and Latin may be mixed
  only with Han plus Hiragana/Katakana, Bopomofo or Hangul (how Japanese, Chinese and Korean
  ids are written); Cyrillic ``а`` in a Latin id is refused;
- an id written entirely in Cyrillic or Greek letters that look like Latin ones (``аре``,
  ``ΑΒΕ``) is refused as a whole-script confusable of a Latin id.

Plain ASCII ids are unchanged by all of this, so their pseudonyms stay the same.

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
#: Letters (category Lo) that render as blank space: the Hangul fillers.
_INVISIBLE = frozenset("\u115f\u1160\u3164\uffa0")
#: First word of a character's Unicode name → script, where the two differ.
_SCRIPT_ALIASES = {
    "CJK": "HAN",
    "IDEOGRAPHIC": "HAN",
    "KATAKANA-HIRAGANA": "KANA",
    "ARABIC-INDIC": "ARABIC",
    "EXTENDED": "ARABIC",  # EXTENDED ARABIC-INDIC DIGIT ...
}
#: Script sets that may share one id (UTS #39 "highly restrictive"), besides a single script.
_MIXES = (
    frozenset({"LATIN", "HAN", "HIRAGANA", "KATAKANA", "KANA"}),
    frozenset({"LATIN", "HAN", "BOPOMOFO"}),
    frozenset({"LATIN", "HAN", "HANGUL"}),
)
#: Cyrillic and Greek letters drawn like a Latin letter in common fonts (from UTS #39
#: confusables.txt); an id made only of these reads as a Latin id that it is not.
_LATIN_LOOKALIKES = frozenset(
    "аеорсхуіјѕԁӏԛԝһӀАВЕКМНОРСТХІЈЅԌԚԜ"  # Cyrillic
    "ΑΒΕΖΗΙΚΜΝΟΡΤΥΧοιαρυνκχ"  # Greek
)


def _script(char: str) -> str:
    """Script of one character; ASCII digits and the allowed punctuation are "COMMON"."""
    if char.isascii() and not char.isalpha():
        return "COMMON"
    word = unicodedata.name(char, "UNKNOWN").split(" ", 1)[0]
    return _SCRIPT_ALIASES.get(word, word)


def _check_profile(uid: str) -> None:
    """Refuse invisible letters, mixed scripts and whole-script confusables (module docstring)."""
    scripts = {_script(c) for c in uid} - {"COMMON"}
    if len(scripts) > 1 and not any(scripts <= allowed for allowed in _MIXES):
        raise InvalidUserId(
            f"user id mixes {' and '.join(sorted(s.lower() for s in scripts))} letters; "
            "spell it in one script"
        )
    letters = [c for c in uid if _script(c) != "COMMON"]
    if scripts in ({"CYRILLIC"}, {"GREEK"}) and all(c in _LATIN_LOOKALIKES for c in letters):
        raise InvalidUserId(
            f"user id is written in {scripts.pop().lower()} letters that look like Latin ones; "
            "use the Latin spelling"
        )


def normalize_user_id(user_id: str) -> str:
    """Return the NFKC form of a valid id, or raise :class:`InvalidUserId` saying why."""
    if not isinstance(user_id, str):
        raise InvalidUserId("user id must be text")
    hidden = next((c for c in user_id if c in _INVISIBLE), None)
    if hidden is not None:
        raise InvalidUserId(f"user id contains an invisible character (U+{ord(hidden):04X})")
    nfkc = unicodedata.normalize("NFKC", user_id)
    if not 1 <= len(nfkc) <= MAX_LENGTH:
        raise InvalidUserId(f"user id must be 1 to {MAX_LENGTH} characters long")
    bad = next(
        (
            c
            for c in nfkc
            if c not in _PUNCTUATION and unicodedata.category(c) not in _ALLOWED_CATEGORIES
        ),
        None,
    )
    if bad is not None:
        raise InvalidUserId(
            f"user id may contain only letters, digits and . _ @ - (found U+{ord(bad):04X})"
        )
    if nfkc[0] in ".-":
        raise InvalidUserId("user id may not start with '.' or '-'")
    _check_profile(nfkc)
    return nfkc


def pseudonym(secret: bytes, user_id: str) -> str:
    """Keyed pseudonym (64 hex chars) of a *normalised* id under the deployment secret."""
    return hmac.new(secret, b"user\x00" + user_id.encode(), hashlib.sha256).hexdigest()
