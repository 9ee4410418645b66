"""Rules for names people give things (datasets, identities): one spelling per name that looks alike.

``normalize_name`` returns the form to store: Unicode NFKC (full-width and compatibility letters
become plain ones), trimmed, runs of spaces collapsed to one. It refuses what would make two names
look the same but differ: control characters (newlines, tabs), format characters (zero-width spaces
and joiners, right-to-left and other direction marks, soft hyphens, byte-order marks), line and
paragraph separators, private-use, unassigned and surrogate code points, and the invisible "filler"
letters and variation selectors Unicode lists as default-ignorable. Names are unique ignoring case
(``name_key``), which the database enforces with a unique index on ``Lower(name)``.
"""
from __future__ import annotations

import re
import unicodedata

MAX_NAME_LENGTH = 200
MAX_DESCRIPTION_LENGTH = 10_000

#: Unicode general categories refused anywhere in a name.
REFUSED_CATEGORIES = {
    "Cc": "a control character",
    "Cf": "an invisible formatting character",
    "Zl": "a line separator",
    "Zp": "a paragraph separator",
    "Co": "a private-use character",
    "Cs": "a surrogate code point",
    "Cn": "an unassigned code point",
}
#: Default-ignorable code points outside those categories (they render as nothing).
INVISIBLE = (
    {0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x3164, 0xFFA0, 0x2800}
    | set(range(0x180B, 0x1810))  # Mongolian free variation selectors, vowel separator
    | set(range(0xFE00, 0xFE10))  # variation selectors
    | set(range(0xE0100, 0xE01F0))  # variation selectors supplement
)
_SPACES = re.compile(r"\s+")


class BadName(ValueError):
    """A refused name: ``code`` is stable (for clients), ``message`` says what is wrong."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _describe(ch: str) -> str:
    return f"U+{ord(ch):04X} {unicodedata.name(ch, '').lower()}".rstrip()


def normalize_name(value: str, *, what: str = "name", max_length: int = MAX_NAME_LENGTH) -> str:
    """The stored form of a name, or BadName saying what is wrong with it."""
    if not isinstance(value, str):
        raise BadName("invalid", f"{what} must be a string")
    text = unicodedata.normalize("NFKC", value).strip()
    for position, ch in enumerate(text, 1):
        category = unicodedata.category(ch)
        if category in REFUSED_CATEGORIES or ord(ch) in INVISIBLE:
            kind = REFUSED_CATEGORIES.get(category, "an invisible character")
            raise BadName(
                "invisible_character",
                f"{what} contains {kind} ({_describe(ch)}) at position {position}; "
                "names may not contain control or invisible characters",
            )
    text = _SPACES.sub(" ", text)
    if not text:
        raise BadName("blank", f"{what} is empty")
    if len(text) > max_length:
        raise BadName("too_long", f"{what} has {len(text)} characters; at most {max_length} are allowed")
    return text


def name_key(name: str) -> str:
    """What two names must differ in to be different names: their case-folded normal form."""
    return normalize_name(name).casefold()
