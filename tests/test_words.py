"""Counts in words (emotion_core.words)."""
from __future__ import annotations

from emotion_core import words


def test_counts_take_the_noun_in_the_number_they_need() -> None:
    assert words.counted(1, "face") == "1 face"
    assert words.counted(0, "face") == "0 faces"
    assert words.counted(3, "bundled real-face model") == "3 bundled real-face models"
    assert words.counted(2, "person", "people") == "2 people"


def test_a_noun_before_a_list_agrees_with_its_length() -> None:
    assert words.noun(1, "model") == "model" and words.noun(2, "model") == "models"
    assert words.noun(3, "class", "classes") == "classes" and words.noun(1, "class", "classes") == "class"
