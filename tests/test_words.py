"""Counts in words (emotion_core.words)."""
from __future__ import annotations

from emotion_core import words


def test_counts_take_the_noun_in_the_number_they_need() -> None:
    assert words.counted(1, "face") == "1 face"
    assert words.counted(0, "face") == "0 faces"
    assert words.counted(3, "bundled real-face model") == "3 bundled real-face models"
    assert words.counted(2, "person", "people") == "2 people"
