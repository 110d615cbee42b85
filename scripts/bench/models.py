"""Train-step and inference throughput per model: optimised path vs a plain fp32 eager loop.

    python -m scripts.bench.models [--models all|NAME,NAME] [--image-size N] [--batch-size N]
        [--steps N] [--tiny] [--compile] [--section throughput|explain|onnx|budget|all]
        [--scorecam] [--threads N] [--sizes 112,224] [--repeats N] [--interleave]
    python -m scripts.bench.models --remeasure-runs [--runs ID,ID] [--threads N]

`--remeasure-runs` times the CPU latency (batch 1) of stored runs again, on a machine that should
be quiet, and stores it with its conditions where it is comparable (evaluation/cost.py says the
rule); latencies timed at the end of training on a busy machine are stored but not shown.

`--section budget` checks the quick profile's FLOP budget on this machine: per model, the forward
FLOPs, the training-step rate in GFLOP/s (planner cost model: 3x forward per image) and the
seconds the budget's planned schedule would take at that rate (the plan itself never reads a clock).

`--section explain` times one explanation map per model and method instead (seconds per map for
one image at the quick profile's size unless --image-size is given; the target is <= 1 s on
2 CPU cores): every Grad-CAM-family method, ViT attention and rollout, and the feature-map grid.

`--section onnx` times CPU latency at batch 1 of PyTorch eager and of the model's ONNX export
(emotion_core.evaluation.export) in ONNX Runtime, one thread each, per model and input size
(`--sizes`, default the quick profile's 112 px and 224 px): median of --repeats after warm-up,
both in the same process, all PyTorch repeats then all ONNX Runtime repeats, or alternating per
repeat with --interleave (steadier ratio on a shared machine). The load average is printed at
start and end.

Both loops run on the same model, same device, same run, so the ratio isolates the optimisation:
CUDA: channels_last + bf16 autocast (train and inference); CPU: channels_last for training,
channels_last + torch.inference_mode (+ torch.compile with --compile) for inference.
"""
from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from emotion_core import explain, models, words
from emotion_core.data.transforms import Preprocess
from emotion_core.evaluation import cost
from emotion_core.training import planner
from emotion_core.training.config import PROFILES


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_loop(step: Callable[[], None], device: torch.device, steps: int, warmup: int) -> float:
    """Seconds for `steps` calls of `step` after `warmup` untimed calls."""
    for _ in range(warmup):
        step()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return time.perf_counter() - t0


def train_throughput(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, optimised: bool,
                     steps: int, warmup: int) -> float:
    model = copy.deepcopy(model).train()
    device = x.device
    cuda = device.type == "cuda"
    if optimised:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loss_fn = nn.CrossEntropyLoss()

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=optimised and cuda):
            loss = loss_fn(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return steps * len(x) / time_loop(step, device, steps, warmup)


def infer_throughput(model: nn.Module, x: torch.Tensor, *, optimised: bool, steps: int,
                     warmup: int, compile_model: bool) -> float:
    model = copy.deepcopy(model).eval()
    device = x.device
    cuda = device.type == "cuda"
    if optimised:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
        if compile_model:
            model = torch.compile(model)

    def step() -> None:
        if optimised:
            with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
                model(x)
        else:
            with torch.no_grad():
                model(x)

    return steps * len(x) / time_loop(step, device, steps, warmup)


def time_explanations(model_names: Sequence[str] | None = None, *, image_size: int | None = None,
                      methods: Sequence[str] | None = None, repeats: int = 3, tiny: bool = False,
                      progress: bool = True) -> list[dict[str, Any]]:
    """Seconds per map (median of `repeats` after one warm-up) per registry model and method.

    Defaults: every registry model at the quick profile's input size, every applicable method
    except scorecam (one forward pass per channel: name it in `methods` to time it).
    The target is <= 1 s per map on 2 CPU cores.
    """
    size = int(image_size or PROFILES["quick"].image_size)
    names = list(model_names or models.REGISTRY)
    rows: list[dict[str, Any]] = []
    gen = torch.Generator().manual_seed(0)
    for name in tqdm(names, desc="explain timing", disable=not progress):
        spec = models.get_spec(name)
        model, _ = models.build_model(name, 3, pretrained=False, image_size=size, tiny=tiny)
        x = torch.randn(1, 3, size, size, generator=gen)
        view = np.zeros((size, size, 3), np.uint8)
        wanted = [m for m in explain.methods_for(spec) if m != "scorecam"] if methods is None else methods
        for method in wanted:
            row: dict[str, Any] = {"model": name, "method": method, "image_size": size}
            if method not in explain.methods_for(spec):
                rows.append({**row, "seconds": float("nan"), "error": "not applicable"})
                continue
            try:
                times = []
                for _ in range(repeats + 1):
                    t0 = time.perf_counter()
                    explain.explain_image(model, x, view, method)
                    times.append(time.perf_counter() - t0)
                rows.append({**row, "seconds": float(np.median(times[1:])), "error": ""})
            except Exception as exc:  # a benchmark reports failures rather than stopping
                rows.append({**row, "seconds": float("nan"), "error": f"{type(exc).__name__}: {exc}"})
    return rows


def explain_section(names: list[str], image_size: int | None, tiny: bool, scorecam: bool) -> None:
    """Seconds per explanation map, per model and method, on this machine's CPU threads."""
    methods = None
    if scorecam:
        methods = sorted({m for n in names for m in explain.methods_for(models.get_spec(n))},
                         key=explain.ALL_METHODS.index)
    rows = time_explanations(names, image_size=image_size, methods=methods, tiny=tiny)
    df = pd.DataFrame(rows)
    size = int(df["image_size"].iloc[0]) if len(df) else 0
    print(f"explanations: seconds per map, one image at {size}px, {torch.get_num_threads()} torch "
          f"threads, load average {os.getloadavg()[0]:.1f} (median of 3 after a warm-up)")
    table = df.pivot(index="model", columns="method", values="seconds").reindex(names)
    cols = [m for m in explain.ALL_METHODS if m in table.columns]
    print(table[cols].to_string(float_format=lambda v: f"{v:.2f}", na_rep="-"))
    slow = df[df["seconds"] > 1.0]
    print(f"maps over 1 s: {len(slow)} of {df['seconds'].notna().sum()}"
          + (": " + ", ".join(f"{r.model}/{r.method} {r.seconds:.2f}s" for r in slow.itertuples())
             if len(slow) else ""))
    for r in df[df["error"].astype(bool)].itertuples():
        print(f"  {r.model}/{r.method}: {r.error}")


def _ms(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000.0


def time_onnx(model_names: Sequence[str], sizes: Sequence[int], *, repeats: int = 20,
              warmup: int = 3, interleave: bool = False, tiny: bool = False,
              progress: bool = True) -> list[dict[str, Any]]:
    """Batch-1 CPU milliseconds, PyTorch eager vs ONNX Runtime, one thread each, per model/size.

    Untrained weights (speed does not depend on their values). Each export is parity-checked
    (emotion_core.evaluation.export); `max_dp` is that check's max probability difference.
    """
    from emotion_core.evaluation.export import export_model
    from emotion_core.evaluation.onnx_model import make_session

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    rows: list[dict[str, Any]] = []
    gen = torch.Generator().manual_seed(0)
    with tempfile.TemporaryDirectory(prefix="bench-onnx-") as tmp:
        for name in tqdm(model_names, desc="onnx timing", disable=not progress):
            spec = models.get_spec(name)
            for size in sizes:
                row: dict[str, Any] = {"model": name, "px": size}
                try:
                    model = models.build_model(name, 3, pretrained=False, image_size=size,
                                               tiny=tiny)[0].eval()
                    exp = export_model(model, os.path.join(tmp, f"{name}-{size}"),
                                       classes=["a", "b", "c"],
                                       preprocess=Preprocess(size, spec.mean, spec.std))
                    sess = make_session(exp.onnx_path, threads=1)
                    x = torch.randn(1, 3, size, size, generator=gen)
                    feed = {exp.meta["input"]["name"]: x.numpy()}

                    def eager(model=model, x=x) -> None:
                        with torch.inference_mode():
                            model(x)

                    def ort(sess=sess, feed=feed) -> None:
                        sess.run(None, feed)

                    for _ in range(warmup):
                        eager()
                        ort()
                    if interleave:
                        pairs = [(_ms(eager), _ms(ort)) for _ in range(repeats)]
                        t_eager, t_ort = [a for a, _ in pairs], [b for _, b in pairs]
                    else:
                        t_eager = [_ms(eager) for _ in range(repeats)]
                        t_ort = [_ms(ort) for _ in range(repeats)]
                    e_ms, o_ms = float(np.median(t_eager)), float(np.median(t_ort))
                    row.update(torch_ms=e_ms, onnx_ms=o_ms, speedup=e_ms / o_ms,
                               max_dp=exp.meta["export"]["parity"].get("max_abs_diff_probabilities"),
                               onnx_mb=exp.meta["bytes"] / 1e6, error="")
                    os.remove(exp.onnx_path)
                    del model, sess
                except Exception as exc:  # a benchmark reports failures rather than stopping
                    row.update(torch_ms=float("nan"), onnx_ms=float("nan"), speedup=float("nan"),
                               max_dp=float("nan"), onnx_mb=float("nan"),
                               error=f"{type(exc).__name__}: {exc}")
                rows.append(row)
    torch.set_num_threads(threads)
    return rows


def onnx_section(names: list[str], sizes: list[int], repeats: int, warmup: int,
                 interleave: bool, tiny: bool) -> None:
    """PyTorch eager vs ONNX Runtime latency table, with the load average around it."""
    import onnxruntime

    def load() -> str:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())

    order = "interleaved per repeat" if interleave else "all PyTorch repeats, then all ONNX Runtime"
    print(f"onnx: CPU latency, batch 1, 1 thread each (torch {torch.__version__}, onnxruntime "
          f"{onnxruntime.__version__}), median of {repeats} after {warmup} warm-up, {order}; "
          f"{os.cpu_count()} CPUs, load average (1/5/15 min) at start {load()}", flush=True)
    df = pd.DataFrame(time_onnx(names, sizes, repeats=repeats, warmup=warmup,
                                interleave=interleave, tiny=tiny))
    print(df.drop(columns="error").to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    for r in df[df["error"].astype(bool)].itertuples():
        print(f"  {r.model} {r.px}px: {r.error}")
    print(f"speedup = torch_ms / onnx_ms; load average at end {load()}")


def budget_section(names: list[str], n_train: int, n_val: int, steps: int, tiny: bool) -> None:
    """The quick profile's plan per model and what it would cost in seconds on this machine."""
    cfg = PROFILES["quick"]
    size = cfg.image_size
    print(f"quick profile: {cfg.budget_tflop:g} TFLOP per model at {size}px, {n_train} train + "
          f"{n_val} val images; {torch.get_num_threads()} torch threads, load average "
          f"{os.getloadavg()[0]:.1f}")
    for name in names:
        model, _ = models.build_model(name, 3, pretrained=False, image_size=size, tiny=tiny)
        flops = planner.forward_flops(model, size)
        x = torch.randn(cfg.batch_size, 3, size, size)
        y = torch.randint(0, 3, (cfg.batch_size,))
        img_s = train_throughput(model, x, y, optimised=False, steps=steps, warmup=1)
        rate = img_s * planner.TRAIN_STEP * flops
        for pretrained in (False, True):
            plan = planner.plan_schedule(cfg, forward=flops, n_train=n_train, n_val=n_val,
                                         pretrained=pretrained)
            print(f"{name:<18} {'pretrained' if pretrained else 'scratch':<10} "
                  f"{flops / 1e9:6.2f} GFLOP fwd  {rate / 1e9:6.1f} GFLOP/s  plan {plan.epochs} "
                  f"epochs ({plan.head_epochs} head, {plan.max_batches or 'all'} batches) "
                  f"{plan.planned_flops / 1e12:5.2f} TFLOP ~{plan.planned_flops / rate:5.0f} s",
                  flush=True)
        del model


def remeasure(run_ids: str | None, threads: int) -> int:
    """Time stored runs' CPU latency again and store it where comparable."""
    ids = [r.strip() for r in run_ids.split(",") if r.strip()] if run_ids else None
    rows = cost.remeasure_runs(ids, threads=threads or None)
    if not rows:
        print("no stored model runs to measure")
        return 0
    bad = [r["run_id"] for r in rows if not r["comparable"]]
    print(f"{words.counted(len(rows), 'run')} timed, {len(rows) - len(bad)} comparable"
          + (f"; NOT comparable (machine busy: rerun when it is quiet): {', '.join(bad)}" if bad else ""))
    return 0


def main(argv: list[str] | None = None) -> int:
    cuda = torch.cuda.is_available()
    p = argparse.ArgumentParser(prog="python -m scripts.bench.models", description=__doc__.split("\n")[0])
    p.add_argument("--models", default="all", help="'all' or comma-separated registry names")
    p.add_argument("--image-size", type=int, default=None,
                   help="default: 224 on CUDA, else 112 (explain section: the quick profile's)")
    p.add_argument("--batch-size", type=int, default=64 if cuda else 16)
    p.add_argument("--steps", type=int, default=20 if cuda else 3, help="timed steps per loop")
    p.add_argument("--warmup", type=int, default=None,
                   help="untimed steps per loop (default 5 on CUDA, else 1; onnx section 3)")
    p.add_argument("--tiny", action="store_true", help="tiny model configs (tests)")
    p.add_argument("--compile", action="store_true", help="torch.compile the inference model")
    p.add_argument("--section", choices=("throughput", "explain", "onnx", "budget", "all"),
                   default="throughput")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = default)")
    p.add_argument("--scorecam", action="store_true",
                   help="explain section: time ScoreCAM too (one forward pass per channel)")
    p.add_argument("--sizes", default="112,224", help="onnx section: comma-separated input sizes")
    p.add_argument("--repeats", type=int, default=20, help="onnx section: timed calls per engine")
    p.add_argument("--interleave", action="store_true",
                   help="onnx section: alternate the two engines per repeat")
    p.add_argument("--remeasure-runs", action="store_true",
                   help="time the CPU latency of stored runs again and store it where comparable")
    p.add_argument("--runs", default=None, help="--remeasure-runs: these run ids (default: all)")
    p.add_argument("--n-train", type=int, default=465, help="budget section: train images "
                   "(default: webfaces3's 465)")
    p.add_argument("--n-val", type=int, default=115, help="budget section: val images")
    args = p.parse_args(argv)
    if args.remeasure_runs:
        return remeasure(args.runs, args.threads)
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    try:
        names = models.select(args.models)
        sizes = [int(v) for v in args.sizes.split(",") if v.strip()]
        if min(args.image_size or 1, args.batch_size, args.steps, args.repeats, *sizes) < 1:
            raise ValueError("--image-size, --batch-size, --steps, --repeats and --sizes must be "
                             "positive")
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.section in ("explain", "all"):
        explain_section(names, args.image_size, args.tiny, args.scorecam)
    if args.section in ("onnx", "all"):
        onnx_section(names, sizes, args.repeats, 3 if args.warmup is None else args.warmup,
                     args.interleave, args.tiny)
    if args.section in ("budget", "all"):
        budget_section(names, args.n_train, args.n_val, args.steps, args.tiny)
    if args.section in ("explain", "onnx", "budget"):
        return 0
    if args.warmup is None:
        args.warmup = 5 if cuda else 1
    args.image_size = args.image_size or (224 if cuda else 112)
    device = torch.device("cuda" if cuda else "cpu")
    dev_name = torch.cuda.get_device_name(device) if cuda else f"CPU ({torch.get_num_threads()} threads)"
    print(f"device: {dev_name}; batch {args.batch_size}, {args.image_size}px, {args.steps} steps")
    torch.manual_seed(0)
    rows = []
    for name in names:
        model, _ = models.build_model(name, 3, pretrained=False, image_size=args.image_size, tiny=args.tiny)
        model.to(device)
        x = torch.randn(args.batch_size, 3, args.image_size, args.image_size, device=device)
        y = torch.randint(0, 3, (args.batch_size,), device=device)
        kw = dict(steps=args.steps, warmup=args.warmup)
        row = {"model": name,
               "train_eager": train_throughput(model, x, y, optimised=False, **kw),
               "train_opt": train_throughput(model, x, y, optimised=True, **kw),
               "infer_eager": infer_throughput(model, x, optimised=False, compile_model=False, **kw),
               "infer_opt": infer_throughput(model, x, optimised=True,
                                             compile_model=args.compile, **kw)}
        row["train_ratio"] = row["train_opt"] / row["train_eager"]
        row["infer_ratio"] = row["infer_opt"] / row["infer_eager"]
        rows.append(row)
        print(f"{name:<18} train {row['train_eager']:8.1f} -> {row['train_opt']:8.1f} img/s "
              f"(x{row['train_ratio']:.2f})  infer {row['infer_eager']:8.1f} -> "
              f"{row['infer_opt']:8.1f} img/s (x{row['infer_ratio']:.2f})", flush=True)
        del model
    df = pd.DataFrame(rows)
    print("\n" + df.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
