"""Numeric command-line options checked against what they mean, in the option's own words,
before a script starts its work (shared by scripts.train and scripts.prepare_data)."""
from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

# (attribute on the parsed args, flag, test the value must pass, what it must be)
Rule = tuple[str, str, Callable[[float], bool], str]


def range_error(args: argparse.Namespace, rules: Sequence[Rule]) -> str | None:
    """The first given flag outside its range as one sentence ("--lr must be > 0, e.g. 0.001;
    got 0"), or None; a flag left out (None) keeps its default and is not checked."""
    for attr, flag, ok, wanted in rules:
        value = getattr(args, attr)
        if value is not None and not ok(value):
            return f"{flag} must be {wanted}; got {value:g}"
    return None
