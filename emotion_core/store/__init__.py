"""The artifact store: where things live (`paths`), atomic files (`files`), runs and datasets.

    paths      every folder and file name under artifacts/ (the only module that knows them)
    files      atomic writers/readers (json, csv, png), folder publishing
    runs       RunRecord, save_run / load_run / list_runs, run weights, the leaderboard
    bundle     a run made a read-only release model (fp16, model card) in bundled/
    datasets   prepared-dataset tables, report.json and the EDA pictures
"""
from emotion_core.store import files, paths
from emotion_core.store.datasets import (
    eda_images,
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
    ReadOnlyRunError,
    RunRecord,
    delete_run,
    git_changed,
    git_commit,
    list_runs,
    load_run,
    load_weights,
    new_run_id,
    save_run,
    split_hash,
    update_run_manifest,
    update_run_metrics,
    write_leaderboard,
)

__all__ = [
    "files", "paths", "eda_images", "is_prepared", "list_datasets", "load_dataset_table",
    "load_report",
    "save_dataset_table", "save_report", "atomic_path", "publish_dir", "read_csv", "read_json",
    "write_csv", "write_json", "write_png", "HISTORY_COLUMNS", "LEADERBOARD_COLUMNS",
    "BrokenRunError", "ReadOnlyRunError", "RunRecord", "delete_run", "git_changed", "git_commit",
    "list_runs",
    "load_run", "load_weights", "new_run_id", "save_run", "split_hash", "update_run_manifest",
    "update_run_metrics",
    "write_leaderboard",
]
