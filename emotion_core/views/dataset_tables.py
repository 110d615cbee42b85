"""Tables of a prepared dataset for the Data and Home pages, from its report and split tables:
where its pictures came from, its classes per split before and after cleaning, how val and test
were made, what cleaning found, image sizes (pandas only: no torch, no Streamlit)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from emotion_core import store, words
from emotion_core.data import eda, synthetic


def dataset_root(name: str) -> Path | None:
    """The image folder a prepared dataset was indexed from (None when unknown or gone)."""
    try:
        root = store.load_report(name).get("root")
    except (OSError, ValueError):
        return None
    return Path(root) if root and Path(root).is_dir() else None


def training_folders(name: str) -> list[Path]:
    """The image folders `scripts.train --data` takes to train on a prepared dataset again: its
    own folder, or for a combination of sets ('a+b') each source's folder (its report's root is
    only their common parent). Empty when any of them is gone."""
    try:
        report = store.load_report(name)
    except (OSError, ValueError):
        return []
    roots = [s.get("root") for s in report.get("sources") or []] or [report.get("root")]
    folders = [Path(r) for r in roots if r]
    return folders if folders and len(folders) == len(roots) and all(f.is_dir() for f in folders) else []


NOT_PREPARED = "not prepared here"  # a dataset known only from its runs (bundled, reference)


def data_source(name: str) -> tuple[str, str]:
    """("synthetic demo" | "HES (Kaggle)" | "local folder", where) for the Home page, or
    (NOT_PREPARED, "") for a dataset this store has runs of but no prepared report."""
    try:
        root = str(store.load_report(name).get("root", ""))
    except (OSError, ValueError):
        return NOT_PREPARED, ""
    low = root.lower()
    if is_generated(None, root) or Path(root) == store.paths.generated_data_dir(synthetic.DEMO_DATASET):
        return "synthetic demo", root
    if "human-emotions" in low or "kagglehub" in low or "hes" == Path(root).name.lower():
        return "HES (Kaggle)", root
    return "local folder", root


def bring_images(name: str, records: list[store.RunRecord]) -> str:
    """How to bring the images of a dataset known only from its runs (NOT_PREPARED) to this
    machine: one folder is prepared as is; a set of several trained together (its runs name
    their `sources`) is prepared set by set, and appears itself once a run trains on them."""
    sources = sorted({str(s) for r in records if r.manifest.get("dataset") == name
                      for s in r.manifest.get("sources") or []})
    if len(sources) > 1:
        return (f"`python -m scripts.prepare_data --data DIR` for each of its sets "
                f"({', '.join(sources)}) gives each its own Data page; **{name}** itself appears "
                f"once a run trains on them together (`python -m scripts.train --data DIR "
                f"--data DIR ...`).")
    return ("`python -m scripts.prepare_data --data DIR` on its folder brings its samples and "
            "class balance here.")


SOURCE_STAGE = "as found in the folders"
FINAL_STAGE = "after cleaning and carving (what models train and are tested on)"


def class_counts(name: str) -> pd.DataFrame:
    """Long table (stage, split, class, n) from report.json: readable images per source split
    as found in the folders, and the final subsets after cleaning and carving val/test."""
    rep = store.load_report(name)
    rows = [{"stage": SOURCE_STAGE, "split": s, "class": c, "n": int(n)}
            for s, per in (rep.get("counts") or {}).items() for c, n in per.items()]
    rows += [{"stage": FINAL_STAGE, "split": s, "class": c, "n": int(n)}
             for s, per in (rep.get("subset_counts") or {}).items() for c, n in per.items()]
    return pd.DataFrame(rows, columns=["stage", "split", "class", "n"])


_SPLIT_SOURCE = {"dataset": "the dataset's own split", "carved": "carved from train",
                 "none": "none"}


def split_notes(name: str) -> tuple[str, list[str]]:
    """How the subsets were made, in one line (where test and validation came from, the share
    and seed of a carve, people read from file names), and the report's warnings."""
    rep = store.load_report(name)
    parts = []
    for subset, label in (("test", "Test"), ("val", "Validation")):
        source = rep.get(f"{subset}_source")
        if source is None:
            continue
        text = f"{label}: {_SPLIT_SOURCE.get(source, source)}"
        if source == "carved":
            text += f" ({rep.get(f'{subset}_fraction', 0):.0%}, seed {rep.get('seed', 0)})"
        parts.append(text)
    subjects = rep.get("subjects")
    if subjects and subjects.get("files"):
        parts.append(f"carved by person: {subjects['subjects']} people read from "
                     f"{subjects['files']} file names (`{rep.get('subject_pattern')}`)")
    return " · ".join(parts), [str(w) for w in rep.get("warnings") or []]


def dataset_sources(name: str) -> list[str]:
    """The sets a combined dataset (several `--data` trained together) is made of, as its
    report names them; [] for a dataset prepared from one folder."""
    try:
        report = store.load_report(name)
    except (OSError, ValueError):
        return []
    return [str(s.get("name")) for s in report.get("sources") or [] if s.get("name")]


def counts_by_source(name: str) -> pd.DataFrame:
    """(source, split, class, n) of a combined dataset's subsets after cleaning, carving and the
    check for copies across its sets, from its split table."""
    split = store.load_dataset_table(name, "split")
    out = (split.groupby(["source", "subset", "label"]).size().rename("n").reset_index()
           .rename(columns={"subset": "split", "label": "class"}))
    # the sets in the order they were combined, the subsets train, val, test
    out["source"] = pd.Categorical(out["source"], list(dict.fromkeys(split["source"])), ordered=True)
    out["split"] = pd.Categorical(out["split"], ["train", "val", "test"], ordered=True)
    out = out.sort_values(["source", "split", "class"]).reset_index(drop=True)
    return out.astype({"source": str, "split": str})


def source_split_notes(sources: list[str]) -> dict[str, tuple[str, list[str]]]:
    """{set: (how its subsets were made, its warnings)} for each of a combined dataset's sets
    (`dataset_sources`), from that set's own report (a set whose report is gone is left out)."""
    out = {}
    for source in sources:
        try:
            out[source] = split_notes(source)
        except (OSError, ValueError):
            continue
    return out


def issue_counts(name: str) -> pd.DataFrame:
    """Files per cleaning issue kind (issue, files) from the dataset report, kinds with no file
    left out: empty when the set is clean."""
    summary = eda.cleaning_summary(store.load_report(name))
    out = summary.rename(columns={"total": "files"})[["issue", "files"]]
    return out[out["files"] > 0].reset_index(drop=True)


def image_stats(name: str) -> pd.DataFrame:
    """Width/height/mode summary of the dataset index (one row per mode and format)."""
    idx = store.load_dataset_table(name, "index")
    cols = [c for c in ("format", "mode") if c in idx.columns]
    if not cols or "width" not in idx.columns:
        return pd.DataFrame()
    g = idx.groupby(cols, dropna=False)
    out = g.agg(n=("width", "size"), width_min=("width", "min"), width_median=("width", "median"),
                width_max=("width", "max"), height_min=("height", "min"),
                height_median=("height", "median"), height_max=("height", "max")).reset_index()
    return out.rename(columns={"n": "files", **{c: c.replace("_", " ") + " (px)" for c in out.columns
                                                if c.startswith(("width_", "height_"))}})


def missing_pieces() -> list[str]:
    """What a fresh checkout lacks, in words, for the app's first-run screen."""
    out = []
    if not store.paths.generated_data_dir(synthetic.DEMO_DATASET).is_dir() and not store.list_datasets():
        out.append("no dataset: the synthetic demo faces have not been generated "
                   "(`python -m scripts.get_data synthetic`)")
    if not store.list_datasets():
        out.append("no prepared dataset report under artifacts/datasets/ "
                   "(`python -m scripts.prepare_data --data DIR`)")
    runs, broken = store.list_runs()
    if not runs:
        out.append("no trained runs under artifacts/runs/ (`python -m scripts.train ...`)"
                   + (f"; {words.counted(len(broken), 'broken run folder')} found"
                      if broken else ""))
    return out

def is_generated(dataset: object, root: object) -> bool:
    """Whether a set's pictures are drawn, not photographed: the synthetic demo, or any set
    whose folder holds the generator's metadata file."""
    if dataset == synthetic.DEMO_DATASET:
        return True
    return bool(root) and (Path(str(root)) / synthetic.METADATA_FILE).is_file()
