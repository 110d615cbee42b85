"""Prepared-dataset reports on disk: the index/split/cleaning tables, report.json, the EDA folder."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from emotion_core.store import paths
from emotion_core.store.files import read_csv, read_json, write_csv, write_json


def save_dataset_table(name: str, table: str, df: pd.DataFrame) -> Path:
    path = paths.dataset_table_path(name, table)
    write_csv(path, df)
    return path


def load_dataset_table(name: str, table: str) -> pd.DataFrame:
    path = paths.dataset_table_path(name, table)
    if not path.exists():
        raise FileNotFoundError(f"dataset '{name}' has no {table} table at {path}; "
                                f"run `python -m scripts.prepare_data` first")
    return read_csv(path)


def save_report(name: str, report: dict[str, Any]) -> Path:
    path = paths.dataset_dir(name) / paths.REPORT
    write_json(path, report)
    return path


def load_report(name: str) -> dict[str, Any]:
    """A prepared dataset's report.json (FileNotFoundError when it was never prepared)."""
    return read_json(paths.dataset_dir(name) / paths.REPORT)


def is_prepared(name: str) -> bool:
    return (paths.dataset_dir(name) / paths.REPORT).exists()


def eda_images(name: str) -> list[Path]:
    """The EDA pictures saved for a prepared dataset (sample grids, mean faces), sorted by name;
    none when prepare_data has not written them."""
    folder = paths.eda_dir(name)
    return sorted(folder.glob("*.png")) if folder.is_dir() else []


def list_datasets() -> list[str]:
    base = paths.datasets_dir()
    if not base.is_dir():
        return []
    return sorted(p.name for p in base.iterdir() if (p / paths.REPORT).exists())
