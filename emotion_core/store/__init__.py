"""The artifact store: where things live (`paths`), atomic files (`files`), runs and datasets.

    paths      every folder and file name under artifacts/ (the only module that knows them)
    files      atomic writers/readers (json, csv, png), folder publishing
    runs       RunRecord, save_run / load_run / list_runs, run weights, the leaderboard
    datasets   prepared-dataset tables and report.json
"""
from emotion_core.store import paths
from emotion_core.store.datasets import (
    is_prepared,
    list_datasets,
    load_dataset_table,
    load_report,
    save_dataset_table,
    save_report,
)
from emotion_core.store.files import (
    atomic_path,
    publish_dir,
    read_csv,
    read_json,
    write_csv,
    write_json,
    write_png,
)
from emotion_core.store.runs import (
    HISTORY_COLUMNS,
    LEADERBOARD_COLUMNS,
    BrokenRunError,
    RunRecord,
    delete_run,
    list_runs,
    load_run,
    load_weights,
    save_run,
    update_run_manifest,
    update_run_metrics,
    write_leaderboard,
)

__all__ = [
    "paths", "is_prepared", "list_datasets", "load_dataset_table", "load_report",
    "save_dataset_table", "save_report", "atomic_path", "publish_dir", "read_csv", "read_json",
    "write_csv", "write_json", "write_png", "HISTORY_COLUMNS", "LEADERBOARD_COLUMNS", "BrokenRunError", "RunRecord",
    "delete_run", "list_runs", "load_run", "load_weights", "save_run", "update_run_manifest",
    "update_run_metrics",
    "write_leaderboard",
]
