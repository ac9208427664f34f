"""Checks on free text typed by people: what may be stored, shown and sent in an e-mail header."""

from __future__ import annotations

import unicodedata

# Control, format (bidirectional overrides such as U+202E, zero-width characters), surrogate,
# private-use and unassigned code points: none belongs in a name or an address, some break
# storage (PostgreSQL refuses U+0000) and some disguise what a reader sees (ASVS V5.1.4).
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})


def is_plain_text(text: str) -> bool:
    """True when every character is one a person types and reads (no control or format code)."""
    return not any(unicodedata.category(character) in _UNSAFE_CATEGORIES for character in text)
