"""Checks on free text typed by people: what may be stored, shown and sent in an e-mail header."""

from __future__ import annotations

import unicodedata

from gardien.resolvers.errors import DomainError, ErrorCode

LABEL_MAX_LENGTH = 100

# Control, format (bidirectional overrides such as U+202E, zero-width characters), surrogate,
# private-use and unassigned code points: none belongs in a name or an address, some break
# storage (PostgreSQL refuses U+0000) and some disguise what a reader sees (ASVS V5.1.4).
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})


def is_plain_text(text: str) -> bool:
    """True when every character is one a person types and reads (no control or format code)."""
    return not any(unicodedata.category(character) in _UNSAFE_CATEGORIES for character in text)


def cleaned_label(label: str, field: str = "label", noun: str = "label") -> str:
    """A name a person gives a thing of theirs (a device, a key, an app password), with its runs
    of white space made single: 1 to LABEL_MAX_LENGTH plain characters, else INVALID_INPUT."""
    cleaned = " ".join(label.split())
    if not 1 <= len(cleaned) <= LABEL_MAX_LENGTH or not is_plain_text(cleaned):
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            f"Give a {noun} of 1 to {LABEL_MAX_LENGTH} characters, without control characters.",
            field,
        )
    return cleaned
