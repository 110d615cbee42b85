"""How the pages show numbers: column headings in words, one number format per kind of value,
missing values as an em dash, chance level, bar order, and pictures scaled to fit a box.

Why here: Home, Compare and Train show the same run columns, so they read the same headings and
formats (3 decimals for every score); a page picks columns, these functions do the rest.
`styled` returns a pandas Styler: Streamlit shows its formatted text (no "None") while sorting
by the numbers underneath.
"""
from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import pandas as pd
from pandas.io.formats.style import Styler

from emotion_core import store

MISSING = "\N{EM DASH}"  # shown for a value a run does not have
SCORES = ("val_accuracy", "val_macro_f1", "test_accuracy", "test_macro_f1")
LOWER_IS_BETTER = ("val_ece", "latency_ms", "params", "flops", "train_seconds")
HEADINGS = {
    "label": "run", "model": "model", "weights_source": "weights", "created": "created",
    "val_accuracy": "val accuracy", "val_macro_f1": "val macro-F1",
    "test_accuracy": "test accuracy", "test_macro_f1": "test macro-F1",
    "val_ece": "val calibration error", "latency_ms": "CPU ms per image",
    "params": "parameters (M)", "flops": "GFLOPs", "train_seconds": "training (s)",
    "epochs_run": "epochs", "profile": "profile", "dataset": "dataset", "run_id": "run id",
    "kind": "kind", "ci_low": "95% interval from", "ci_high": "95% interval to",
    "a_accuracy": "A accuracy", "b_accuracy": "B accuracy", "both_right": "both right",
    "only_a": "only A right", "only_b": "only B right", "both_wrong": "both wrong",
    "p_value": "p (McNemar)", "best_run_accuracy": "best run's accuracy",
    "majority_right": "right by most runs", "any_right": "right by any run",
    "missed_by_all": "missed by every run", "missed": "missed by", "said_instead": "most said",
    "timed_on": "timed on",
}
FORMATS = {  # by column name, applied after `view` converted units
    **{c: "{:.3f}" for c in (*SCORES, "val_ece")},
    "latency_ms": "{:.1f}", "params": "{:.1f}", "flops": "{:.2f}", "train_seconds": "{:.0f}",
    "epochs_run": "{:.0f}", "p_value": "{:.2g}",
}
UNITS = {"params": 1e6, "flops": 1e9}  # stored as counts, shown in millions / billions
HELP = {
    "val_accuracy": "share of validation images classified correctly",
    "val_macro_f1": "F1 per class, averaged with equal weight per class (validation)",
    "test_accuracy": "share of test images classified correctly (empty: no test split)",
    "test_macro_f1": "macro-F1 on the test split (empty: no test split)",
    "val_ece": "expected calibration error on validation: 0 = confidences match accuracy",
    "latency_ms": "one image's forward pass at the run's input size, batch 1, on the CPU named "
                  "under 'timed on' (a reference run's: the machine it trained on); compare "
                  "times taken on the same kind of CPU",
    "timed_on": "the torch threads used of the CPU's cores, and the day (month-day) the latency "
                "was measured, on a quiet machine; shared machines run the same model up to 3x "
                "slower on some days, so compare times taken together",
    "params": "trainable and frozen parameters, in millions",
    "flops": "floating-point operations for one image at the run's input size, in billions",
    "train_seconds": "wall time of training, evaluation excluded",
    "created": "when the run was made (month-day hour:minute)",
}


def view(table: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """The chosen columns of a comparison table, counts in millions/billions, headed in words."""
    out = table[list(columns)].copy()
    for col, unit in UNITS.items():
        if col in out.columns:
            out[col] = pd.to_numeric(out[col], errors="coerce") / unit
    for col in out.columns:
        if col in FORMATS:
            out[col] = pd.to_numeric(out[col], errors="coerce").astype(float)
        else:
            out[col] = out[col].astype(object).where(out[col].notna(), None)
    return out.rename(columns=HEADINGS)


def styled(shown: pd.DataFrame) -> Styler:
    """A table with its number formats (known columns by `FORMATS`, other decimals with 3) and an
    em dash for every missing value."""
    by_heading = {h: c for c, h in HEADINGS.items()}
    fmt = {}
    for col in shown.columns:
        key = by_heading.get(col, col)
        if key in FORMATS:
            fmt[col] = FORMATS[key]
        elif pd.api.types.is_float_dtype(shown[col]):
            fmt[col] = "{:.3f}"
    text = [c for c in shown.columns if c not in fmt]
    out = shown.style.format(fmt, na_rep=MISSING)
    return out.format(lambda v: MISSING if _missing(v) else v, subset=text) if text else out


def _missing(v: object) -> bool:
    return v is None or (isinstance(v, str) and not v.strip()) or (isinstance(v, float) and v != v)


def help_for(columns: Sequence[str]) -> dict[str, str]:
    """{heading: tooltip} for the chosen columns that have one."""
    return {HEADINGS.get(c, c): HELP[c] for c in columns if c in HELP}


def heading(column: str) -> str:
    return HEADINGS.get(column, column)


def chance_level(records: Sequence[store.RunRecord]) -> float | None:
    """1 / number of classes of these runs (None when they disagree or name none): what a
    classifier that guesses scores on balanced classes, in accuracy and about in macro-F1."""
    sizes = {len(r.manifest.get("classes") or []) for r in records}
    sizes.discard(0)
    return 1.0 / sizes.pop() if len(sizes) == 1 else None


def chance_note(chance: float | None) -> str:
    if chance is None:
        return ""
    n = round(1 / chance)
    return (f"Dashed line: chance level, 1/{n} = {chance:.3f} for {n} classes. A run near it has "
            f"learned nothing usable, whatever its rank.")


BAR_LABEL_CHARS = 64  # a longer run label is cut in its middle on the bars' axis


def bar_label(label: str, limit: int = BAR_LABEL_CHARS) -> str:
    """A run label short enough for a bar's axis, its start (model) and end (time, origin) kept:
    a GPU ensemble's 110-character label left the bars a sliver of Home's width."""
    if len(label) <= limit:
        return label
    tail = limit // 2 - 3  # room for " · 11-30 23:07 · GPU reference"
    return label[:limit - 1 - tail] + "…" + label[-tail:]


def bars(table: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The runs that have `metric`, best first (highest score; lowest cost or error), each with
    `bar_label` (its label cut to fit an axis; the full one where cutting made two alike)."""
    have = table[pd.to_numeric(table[metric], errors="coerce").notna()].copy()
    have[metric] = pd.to_numeric(have[metric]).astype(float)
    if metric in UNITS:
        have[metric] = have[metric] / UNITS[metric]
    if "label" in have.columns:
        short = have["label"].astype(str).map(bar_label)
        have["bar_label"] = short.where(~short.duplicated(keep=False), have["label"].astype(str))
    return have.sort_values(metric, ascending=metric in LOWER_IS_BETTER).reset_index(drop=True)


def bar_height(n: int, *, per_bar: int = 34, base: int = 120) -> int:
    """Pixels for a horizontal bar chart of `n` bars: each bar readable, none crushed."""
    return base + per_bar * max(1, n)


def fit_box(shape: tuple[int, ...], box: tuple[int, int] = (480, 640)) -> int:
    """Display width (px) that fits a picture of `shape` (H, W, ...) inside `box` (H, W),
    never enlarging it: a 20x4000 strip is drawn 480 px tall, not 96,000."""
    h, w = int(shape[0]), int(shape[1])
    scale = min(box[0] / max(h, 1), box[1] / max(w, 1), 1.0)
    return max(1, int(np.floor(w * scale)))


def fit_image(rgb: np.ndarray, box: tuple[int, int] = (480, 640)) -> np.ndarray:
    """The picture scaled down (area average) to fit inside `box` (H, W); small ones unchanged."""
    h, w = rgb.shape[:2]
    scale = min(box[0] / max(h, 1), box[1] / max(w, 1))
    if scale >= 1.0:
        return rgb
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(np.ascontiguousarray(rgb), size, interpolation=cv2.INTER_AREA)


def square(rgb: np.ndarray, side: int) -> np.ndarray:
    """A square picture (a map overlay at model input size) resized to `side` px, so maps of
    models with different input sizes show at one size (bilinear up, area average down)."""
    if rgb.shape[0] == side and rgb.shape[1] == side:
        return rgb
    grow = side > max(rgb.shape[:2])
    return cv2.resize(np.ascontiguousarray(rgb), (side, side),
                      interpolation=cv2.INTER_LINEAR if grow else cv2.INTER_AREA)
