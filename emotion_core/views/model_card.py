"""A bundled model's card: what data, what recipe, which command, what metrics on which split,
and under what terms (Hugging Face model-card style), written from the run's own files."""
from __future__ import annotations

from typing import Any

from emotion_core import models, store
from emotion_core.data import faces
from emotion_core.data.transforms import LOWRES_SIDE
from emotion_core.views import framing

# The team's real sets state no licence (shared/data/README.md): research use only.
DATA_TERMS = ("The training data state no licence: affectnet3 is the angry/happy/sad part of the "
              "public GitHub repository quanbk2512/effectnet (commit b01f8890), webfaces3 that of "
              "YuXuan1216/Emotions_Recognition (commit 5f2f49bd), both scraped face pictures. "
              "Treat these weights as research-only, like the data they were trained on.")


def _threads(manifest: dict[str, Any]) -> str:
    """" with N torch threads" where the run recorded them (a seeded CPU run repeats its numbers
    with the same count); "" for runs from before that."""
    n = (manifest.get("timings") or {}).get("torch_threads")
    return f" with {n} torch thread{'s' if n != 1 else ''}" if n else ""


def training_command(manifest: dict[str, Any]) -> str:
    """The scripts.train command that reproduces the run (data folders named by set)."""
    c = manifest.get("config") or {}
    sources = manifest.get("sources") or [manifest.get("dataset")]
    args = [f"--data ../shared/data/{s}" for s in sources]
    args += [f"--models {manifest['model']}", f"--profile {c.get('profile', 'full')}",
             f"--image-size {manifest.get('image_size')}", f"--epochs {c.get('epochs')}",
             f"--head-epochs {c.get('head_epochs')}", f"--lr {c.get('lr')}",
             f"--finetune-lr {c.get('finetune_lr')}",
             "--refit" if store.runs.is_refit(manifest) else f"--patience {c.get('patience')}",
             f"--label-smoothing {c.get('label_smoothing')}", f"--seed {c.get('seed')}",
             f"--budget-tflop {c.get('budget_tflop') or 0:g}"]
    if c.get("recipe", "finetune") != "finetune":
        args.append(f"--recipe {c['recipe']}")
    if c.get("layer_decay", 1.0) != 1.0:
        args.append(f"--layer-decay {c['layer_decay']}")
    if c.get("ema"):
        args.append(f"--ema {c['ema']}")
    if c.get("mixup"):
        args.append(f"--mixup {c['mixup']}")
    if c.get("sam"):
        args.append(f"--sam {c['sam']}")
    if c.get("forget_rate"):
        args.append(f"--forget-rate {c['forget_rate']}")
    if c.get("distill"):
        args.append(f"--distill {c['distill']} --distill-weight {c.get('distill_weight')} "
                    f"--distill-temperature {c.get('distill_temperature')}")
    if c.get("set_sampling", "proportional") != "proportional":
        args.append(f"--set-sampling {c['set_sampling']}")
    args += [f"--{key.replace('_', '-')} {c[key]}"
             for key in ("scale_jitter", "shift_jitter", "erase", "lowres") if c.get(key)]
    args += [flag for key, flag in (("tta_flip", "--tta-flip"), ("crop_faces", "--crop-faces"))
             if c.get(key) or manifest.get(key)]
    crop = faces.crop_spec(manifest)
    if crop is not None and crop.margin != faces.DEFAULT_MARGIN:
        args.append(f"--face-margin {crop.margin:g}")
    if crop is not None and crop.fit != faces.DEFAULT_FIT:  # runs before --face-fit: "pad"
        args.append(f"--face-fit {crop.fit}")
    if crop is not None and crop.align:
        args.append("--align-faces")
    return "python -m scripts.train " + " ".join(args)


def selection_note(manifest: dict[str, Any]) -> str:
    """Which images chose the weights, and so which numbers are free of that choice."""
    if store.runs.is_refit(manifest):
        return ("A refit: trained on train and validation together for a fixed number of epochs "
                "(the best epoch of a run that validated the same recipe), so it has no "
                "validation numbers; test numbers come from splits that chose nothing.")
    return "Validation picked the epoch; test numbers come from splits that chose nothing."


def _metric_rows(metrics: dict[str, Any], dataset: str) -> list[str]:
    rows = []
    by_source = metrics.get("by_source") or {dataset: {s: metrics[s] for s in ("val", "test")
                                                       if s in metrics}}
    for src, parts in by_source.items():
        for subset in ("val", "test"):
            m = parts.get(subset)
            if m:
                rows.append(_row(src, subset, m))
    for key, m in (metrics.get("cross_dataset") or {}).items():
        name, _, subset = key.rpartition(":")
        if (by_source.get(name) or {}).get(subset):
            continue  # a set it trained on, scored again by cross_eval: already a row above
        rows.append(_row(f"{name} (cross-dataset)", subset, m))
    return rows


def _calibration(cal: dict[str, Any] | None) -> list[str]:
    """The card's calibration section (`scripts.calibrate`), or nothing."""
    if not cal:
        return []
    fit = cal["before"], cal["after"]
    lines = [
        "", "## Calibration", "",
        f"Answers are scaled by a temperature T = {cal['temperature']:g}: each answer p becomes "
        f"softmax(log p / T), which changes the percentages, never the chosen class. T was fitted "
        f"by least negative log-likelihood on the {cal.get('subset', 'val')} answers of run "
        f"`{cal['fitted_on']}` ({fit[0]['images']} images): there the expected calibration error "
        f"went from {fit[0]['ece']:.3f} to {fit[1]['ece']:.3f} and the mean top probability from "
        f"{fit[0]['mean_top_probability']:.3f} to {fit[1]['mean_top_probability']:.3f}, against "
        f"an accuracy of {fit[0]['accuracy']:.3f}. The metrics above are the answers before "
        f"scaling."]
    if cal.get("test"):
        lines += ["", "On the test splits (read afterwards; they chose nothing):", "",
                  "| set | images | accuracy | mean top probability | ECE | NLL |",
                  "|---|---|---|---|---|---|"]
        for name, part in cal["test"].items():
            b, a = part["before"], part["after"]
            lines.append(f"| {name} | {b['images']} | {b['accuracy']:.3f} | "
                         f"{b['mean_top_probability']:.3f} → {a['mean_top_probability']:.3f} | "
                         f"{b['ece']:.3f} → {a['ece']:.3f} | {b['nll']:.3f} → {a['nll']:.3f} |")
    return lines


def _row(name: str, subset: str, m: dict[str, Any]) -> str:
    def num(key: str) -> str:
        v = m.get(key)
        return f"{v:.3f}" if isinstance(v, (int, float)) else "—"

    return (f"| {name} | {subset} | {m.get('n', '—')} | {num('accuracy')} | {num('macro_f1')} | "
            f"{num('ece')} |")


def model_card(run_id: str, *, note: str = "") -> str:
    """Markdown for MODEL_CARD.md of a stored (or bundled) run."""
    rec = store.load_run(run_id, tables=False)
    m, spec = rec.manifest, models.get_spec(rec.manifest["model"])
    details = [s.detail for s in spec.pretrained if s.label == m.get("weights_source") and s.detail]
    recipe = m.get("recipe") or {}
    phases = ", ".join(f"{p['name']} {p['epochs']} epochs at {p['lr']:.2g}"
                       for p in recipe.get("phases", []))
    lines = [
        f"# {run_id}", "", spec.description, "",
        "## Model", "",
        f"- architecture: `{m['model']}`; classes (output order): {', '.join(m['classes'])}",
        f"- input: {m['image_size']} px square, RGB, mean {m['mean']}, std {m['std']}"
        + ("; predictions average the picture and its mirror image" if m.get("tta_flip") else ""),
        f"- starting weights: {m.get('weights_source')}" + (f" ({details[0]})" if details else ""),
        f"- weights stored in {m.get('weights_dtype', 'float32')} "  # bundles are float16
        f"({m.get('weights_bytes', 0) / 2**20:.1f} MiB), sha256 "
        f"`{m.get('weights_sha256', '')[:16]}...`; loaded in float32",
        "", "## Data", "",
        f"- trained on: {', '.join(m.get('sources') or [m.get('dataset')])} "
        f"(each set with its own cleaning and persisted split; face crops: "
        f"{framing.describe(faces.crop_spec(m))})",
        "", "## Recipe", "",
        f"- {recipe.get('name', 'finetune')}: {phases}; "
        + ("refit on train + val, the last epoch kept; " if store.runs.is_refit(m) else
           f"best epoch {m.get('best_epoch')}; ")
        + f"label smoothing {recipe.get('label_smoothing')}, layer decay {recipe.get('layer_decay')}"
        + (f", weights averaged per step (EMA decay {recipe['ema']})" if recipe.get("ema") else "")
        + (f", mixup (alpha {recipe['mixup']})" if recipe.get("mixup") else "")
        + (f", sharpness-aware steps (SAM, radius {recipe['sam']})" if recipe.get("sam") else "")
        + (f", random erasing (p {recipe['erase']})" if recipe.get("erase") else "")
        + (f", {recipe['lowres']:.0%} of the training pictures shrunk to "
           f"{LOWRES_SIDE[0]:.0%}-{LOWRES_SIDE[1]:.0%} of their side and brought back (lost "
           f"detail)" if recipe.get("lowres") else "")
        + (f", each batch's highest-loss {recipe['forget_rate']:.0%} left out from epoch 2 "
           f"(small-loss selection)" if recipe.get("forget_rate") else "")
        + (f", distilled from {recipe['distill']} (weight {recipe.get('distill_weight')}, "
           f"temperature {recipe.get('distill_temperature')})" if recipe.get("distill") else ""),
        f"- trained on {m.get('timings', {}).get('device')}{_threads(m)} in "
        f"{m.get('timings', {}).get('train_seconds')} s; code commit {m.get('git_commit')}"
        f"{' with uncommitted changes' if m.get('git_changed') else ''}; "
        f"created {m.get('created')}",
        f"- command: `{training_command(m)}`, run with the face boxes prepared by "
        f"`python -m scripts.prepare_data --data DIR --detect-faces` for each set",
        "", "## Metrics", "",
        selection_note(m), "",
        "| set | split | images | accuracy | macro-F1 | ECE |", "|---|---|---|---|---|---|",
        *_metric_rows(rec.metrics, str(m.get("dataset"))),
        *_calibration(m.get("calibration")),
        "", "## Terms", "", DATA_TERMS,
    ]
    if note:
        lines += ["", note]
    return "\n".join(lines) + "\n"
