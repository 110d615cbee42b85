"""Explain a stored run: one picture's map, or the run's faithfulness scores.

    python -m scripts.explain --run RUN_ID --image PATH --method gradcam --out OUT.png
        [--layer L] [--head H] [--target CLASS] [--discard-ratio R] [--head-fusion mean|max|min]
    python -m scripts.explain --run RUN_ID --faithfulness --data DIR [--n 32]
        [--methods gradcam,eigencam,...] [--kind auto|mask|deletion] [--steps 20]
        [--cam-layers stages|NAME,NAME] [--device auto|cpu|cuda]
    python -m scripts.explain --run RUN_ID --list-cam-layers

Methods: gradcam, gradcam++, xgradcam, layercam, eigencam, scorecam (slow: one forward pass per channel),
attention and rollout (ViTs), featuremap (a grid of the top channels of a conv layer).
User mistakes print one sentence and exit with status 2.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2

from emotion_core import explain, store
from emotion_core.data import faces, images
from emotion_core.data.transforms import Preprocess
from emotion_core.evaluation import CheckpointMismatchError, load_model
from emotion_core.evaluation.inference import run_flips, run_temperature
from emotion_core.explain import ALL_METHODS as METHODS
from emotion_core.explain import NotApplicableError, evaluate_maps

MIN_SIDE = 16  # smaller pictures cannot hold a recognisable face: refused with a sentence


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m scripts.explain", description=__doc__.split("\n")[0])
    p.add_argument("--run", required=True, help="run id under artifacts/runs")
    p.add_argument("--image", type=Path, help="picture to explain")
    p.add_argument("--method", choices=METHODS, default="gradcam")
    p.add_argument("--layer", help="conv layer name (featuremap), CAM target module (CAM methods; "
                   "see --list-cam-layers) or block index (attention)")
    p.add_argument("--list-cam-layers", action="store_true",
                   help="print the run's CAM target layers, one per feature-grid resolution")
    p.add_argument("--head", type=int, help="attention head (default: mean of heads)")
    p.add_argument("--target", help="class name or index to explain (default: the prediction)")
    p.add_argument("--discard-ratio", type=float, default=0.9, help="rollout: lowest share dropped")
    p.add_argument("--head-fusion", choices=("mean", "max", "min"), default="mean")
    p.add_argument("--top-k", type=int, default=16, help="featuremap: channels shown")
    p.add_argument("--alpha", type=float, default=0.5, help="heat map opacity")
    p.add_argument("--out", type=Path, help="where to write the PNG")
    p.add_argument("--faithfulness", action="store_true", help="score the run's maps on --data")
    p.add_argument("--data", type=Path, help="dataset folder for --faithfulness")
    p.add_argument("--n", type=int, default=32, help="images scored")
    p.add_argument("--methods", help="comma-separated methods to score (default: all but scorecam)")
    p.add_argument("--kind", choices=("auto", "mask", "deletion"), default="auto")
    p.add_argument("--steps", type=int, default=20, help="deletion/insertion steps")
    p.add_argument("--baseline", choices=("blur", "mean"), default="blur")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="where the model runs: auto (the GPU if there "
                   "is one), cpu, cuda, cuda:N")
    p.add_argument("--cam-layers", help="--faithfulness: also score CAMs per layer ('stages' = one "
                   "per resolution, or comma-separated module names)")
    return p.parse_args(argv)


def fail(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return 2


def _target(value: str | None, classes: list[str]) -> int | None:
    if value is None:
        return None
    if value in classes:
        return classes.index(value)
    if value.lstrip("-").isdigit() and 0 <= int(value) < len(classes):
        return int(value)
    raise ValueError(f"unknown class '{value}'; the run's classes are {', '.join(classes)}")


def run_image(args: argparse.Namespace) -> int:
    if args.image is None or args.out is None:
        return fail("--image and --out are required to explain a picture (or use --faithfulness)")
    if args.top_k < 1:  # the maps would quietly show one channel
        return fail(f"--top-k must be at least 1 (the channels shown), got {args.top_k}")
    store.load_run(args.run, tables=False)  # an unknown run is named before the image is read
    try:
        rgb = images.load_rgb(args.image, min_side=MIN_SIDE)
    except (OSError, images.ImageDecodeError) as exc:
        return fail(f"cannot read image {args.image}: {exc}")
    model, manifest = load_model(args.run, device=explain.resolve_device(args.device))
    rgb, cut = faces.as_trained(rgb, manifest)  # a run on face crops reads the face, cut its way
    if cut is not None:
        box = cut[1]
        print(f"note: the run was trained on face crops; it reads the largest face, at "
              f"({box.x}, {box.y}) {box.w}x{box.h} px, cut with its framing")
    target = _target(args.target, list(manifest["classes"]))
    layer: str | int | None = args.layer
    if args.method == "attention" and layer is not None:
        if not layer.lstrip("-").isdigit():
            return fail(f"--layer for attention is a block index, got '{layer}'")
        layer = int(layer)
    if min(rgb.shape[:2]) < int(manifest["image_size"]):
        print(f"note: the picture is {rgb.shape[1]}x{rgb.shape[0]} px; it is enlarged to the "
              f"model's {manifest['image_size']} px input, so the map shows little detail")
    x, view = Preprocess.of(manifest)(rgb)
    res = explain.explain_image(model, x, view, args.method, layer=layer, head=args.head,
                                target=target, discard_ratio=args.discard_ratio,
                                head_fusion=args.head_fusion, top_k=args.top_k, alpha=args.alpha,
                                tta_flip=run_flips(manifest),
                                temperature=run_temperature(manifest))
    image = res.image
    if res.heat is not None and image.shape[0] < 224:  # small inputs: enlarge for viewing
        k = -(-224 // image.shape[0])
        image = cv2.resize(image, None, fx=k, fy=k, interpolation=cv2.INTER_NEAREST)
    store.write_png(args.out, image)
    cls = manifest["classes"][res.target]
    extra = ", ".join(f"{k}={v}" for k, v in res.info.items() if k != "channels")
    print(f"{args.method} of '{manifest['model']}' for class '{cls}' "
          f"(p={res.probs[res.target]:.3f}{', ' + extra if extra else ''})")
    print(f"wrote {args.out}")
    return 0


def run_list_layers(args: argparse.Namespace) -> int:
    model, manifest = load_model(args.run)
    size = int(manifest["image_size"])
    for c in explain.cam_layer_choices(model, size):
        grid = "x".join(map(str, c.grid)) if any(c.grid) else "tokens"
        print(f"{c.name:<24} {grid:>7} at {size} px{'  (default)' if c.default else ''}")
    return 0


def run_faithfulness(args: argparse.Namespace) -> int:
    if args.data is None:
        return fail("--faithfulness needs --data DIR (the run's dataset folder)")
    if args.n < 1 or args.steps < 1:
        return fail("--n and --steps must be positive")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else None
    layers = None
    if args.cam_layers:
        layers = "stages" if args.cam_layers == "stages" else [
            x.strip() for x in args.cam_layers.split(",") if x.strip()]
    res = evaluate_maps.evaluate_run(args.run, args.data, n=args.n, methods=methods, kind=args.kind,
                                    steps=args.steps, baseline=args.baseline, seed=args.seed,
                                    cam_layers=layers, device=args.device)
    print(f"faithfulness of run {args.run} on {res['n']} images ({res['kind']}, CAM layer "
          f"{res['cam_layer']}):")
    print(evaluate_maps.format_table(res))
    if layers:
        print(evaluate_maps.format_layer_table(res))
    print(f"stored in {args.run}/metrics.json under faithfulness.{res['kind']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.list_cam_layers:
            return run_list_layers(args)
        return run_faithfulness(args) if args.faithfulness else run_image(args)
    except store.BrokenRunError as exc:
        return fail(str(exc))
    except (CheckpointMismatchError, NotApplicableError, FileNotFoundError, ValueError) as exc:
        return fail(str(exc))


if __name__ == "__main__":
    sys.exit(main())
