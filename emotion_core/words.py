"""Counts in words, for every message a person reads (pages, command lines, errors).

"1 face", "2 faces": a count takes the noun in the number it needs, never "face(s)".
"""
from __future__ import annotations


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """`n` and the noun in the number it needs: "1 face", "2 faces", "0 faces"."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


def verb(n: int, one: str, many: str) -> str:
    """The verb form that agrees with a count of `n`: verb(1, "is", "are") == "is"."""
    return one if n == 1 else many
