"""Counts in words, for every message a person reads (pages, command lines, errors).

"1 face", "2 faces": a count takes the noun in the number it needs, never "face(s)".
"""
from __future__ import annotations


def noun(n: int, one: str, plural: str | None = None) -> str:
    """The noun in the number a count of `n` needs, without the count: for a list that
    follows ("unknown models a, b"); plural defaults to one + "s"."""
    return one if n == 1 else plural or one + "s"


def counted(n: int, one: str, plural: str | None = None) -> str:
    """`n` and the noun in the number it needs: "1 face", "2 faces", "0 faces"."""
    return f"{n} {noun(n, one, plural)}"


def verb(n: int, one: str, many: str) -> str:
    """The verb form that agrees with a count of `n`: verb(1, "is", "are") == "is"."""
    return one if n == 1 else many
