"""What a model costs: parameters, forward FLOPs and CPU latency at batch 1.

Latency is only a model's cost when nothing else competed for the CPU while it was timed: on the
team's 2-core machine ResNet-34 once read 1,094 ms an image at 112 px because another job ran. So
every latency is stored with how it was measured (`LatencyRecord`: threads, batch, image size,
cores, the 1-minute load average, the CPU other processes used during the timing, when), and a
record taken on a busy machine is marked not comparable; tables then show no number for it
(`latency_ms` None) until `remeasure_runs` times it again on a quiet machine
(`python -m scripts.bench.models --remeasure-runs`).

The rule (COMPARABLE_RULE): comparable when other processes used at most a quarter of the cores
during the timing window (from /proc/stat, minus this process's own CPU time). The 1-minute load
average is recorded but not used where /proc/stat is readable: right after training it still
counts the training this very process just finished (on 2 cores it reads ~2 for a minute after
an otherwise idle run), so it would flag every measurement taken at the end of a run. Without
/proc/stat the rule falls back to load average <= half the cores.
"""
from __future__ import annotations

import copy
import logging
import os
import statistics
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn

from emotion_core import words


def _quiet_triton_notice(record: logging.LogRecord) -> bool:
    return "triton not found" not in record.getMessage()


# Setup removes triton where there is no NVIDIA driver (Makefile, README); torch's CUDA build then
# warns, on importing its FLOP counter, about triton kernels that a CPU model never runs. A
# person starting the app read that warning in their terminal.
logging.getLogger("torch.utils.flop_counter").addFilter(_quiet_triton_notice)
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402  (after the filter)

OTHER_CPU_SHARE = 0.25  # comparable: other processes used at most this share of the cores
LOAD_AVG_SHARE = 0.5  # fallback without /proc/stat: 1-minute load average at most this share
MIN_WINDOW_S = 1.0  # time at least this long, so /proc/stat's 10 ms ticks resolve the other load
COMPARABLE_RULE = (f"other processes used <= {OTHER_CPU_SHARE:g} x cores of CPU while timing "
                   f"(else, without /proc/stat: 1-min load average <= {LOAD_AVG_SHARE:g} x cores)")


def count_params(model: nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def count_flops(model: nn.Module, image_size: int) -> int:
    """Forward FLOPs at batch 1 (torch's FlopCounterMode counts 2 per multiply-add)."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    x = torch.zeros(1, 3, image_size, image_size, device=device)
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(x)
    model.train(was_training)
    return int(counter.get_total_flops())


def measure_latency(model: nn.Module, image_size: int, *, warmup: int = 3, repeats: int = 10) -> float:
    """Median CPU milliseconds for one image (batch 1), after warm-up, on a CPU copy."""
    return float(measure_latency_record(model, image_size, warmup=warmup, repeats=repeats,
                                        min_window_s=0.0)["ms"])


def measure_latency_record(model: nn.Module, image_size: int, *, threads: int | None = None,
                           warmup: int = 3, repeats: int = 10,
                           min_window_s: float = MIN_WINDOW_S) -> dict[str, Any]:
    """Median CPU milliseconds for one image (batch 1) on a CPU copy, with how it was measured.

    Times at least `repeats` forward passes and at least `min_window_s` seconds, after `warmup`.
    Returns {ms, threads, batch, image_size, cores, load_avg, other_cpu, measured_at, comparable,
    rule}; `other_cpu` is the CPU (in cores) other processes used during the timing (None where
    /proc/stat is unreadable).
    """
    cpu_model = copy.deepcopy(model).float().to("cpu").eval()
    x = torch.randn(1, 3, image_size, image_size)
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        used = torch.get_num_threads()
        with torch.inference_mode():
            for _ in range(warmup):
                cpu_model(x)
            window = _CpuWindow()
            times: list[float] = []
            while len(times) < repeats or sum(times) < min_window_s * 1000.0:
                t0 = time.perf_counter()
                cpu_model(x)
                times.append((time.perf_counter() - t0) * 1000.0)
            other = window.other_cores()
    finally:
        torch.set_num_threads(before)
    cores = os.cpu_count() or 1
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {"ms": float(statistics.median(times)), "threads": used, "batch": 1,
            "image_size": int(image_size), "cores": cores,
            "load_avg": None if load is None else round(load, 2),
            "other_cpu": None if other is None else round(other, 2),
            "measured_at": datetime.now().isoformat(timespec="seconds"),
            "comparable": is_comparable(other, load, cores), "rule": COMPARABLE_RULE}


def is_comparable(other_cpu: float | None, load_avg: float | None, cores: int) -> bool:
    """COMPARABLE_RULE: was the machine quiet enough for a latency to be the model's cost?"""
    if other_cpu is not None:
        return other_cpu <= OTHER_CPU_SHARE * cores
    if load_avg is not None:
        return load_avg <= LOAD_AVG_SHARE * cores
    return False  # nothing says the machine was quiet


def headline_latency(record: dict[str, Any] | None) -> float | None:
    """The latency a table may show: the record's ms when comparable, else None."""
    if not record or not record.get("comparable"):
        return None
    return round(float(record["ms"]), 3)


class _CpuWindow:
    """CPU used by other processes between construction and `other_cores()` (Linux /proc/stat)."""

    def __init__(self) -> None:
        self.wall, self.busy, self.own = time.perf_counter(), _busy_seconds(), time.process_time()

    def other_cores(self) -> float | None:
        busy = _busy_seconds()
        if busy is None or self.busy is None:
            return None
        wall = max(time.perf_counter() - self.wall, 1e-6)
        own = time.process_time() - self.own
        return max(0.0, (busy - self.busy - own) / wall)


def _busy_seconds() -> float | None:
    """Seconds all CPUs spent busy since boot (every /proc/stat state but idle and iowait)."""
    try:
        first = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    if not first or first[0] != "cpu":
        return None
    ticks = [int(v) for v in first[1:9]]  # user nice system idle iowait irq softirq steal
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------------------------
# Stored runs


def remeasure_runs(run_ids: Iterable[str] | None = None, *, threads: int | None = None,
                   report: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Time every (or the given) model run's latency again and store it where it is comparable
    or the stored one is not; ensembles get their members' sum; the leaderboard is rebuilt.
    Returns one row per model run: run_id, model, old and new ms, comparable, stored."""
    from emotion_core import store
    from emotion_core.evaluation.loading import load_model

    runs, _ = store.list_runs()
    wanted = set(run_ids) if run_ids is not None else None
    rows = []
    for rec in runs:
        if rec.is_ensemble or (wanted is not None and rec.run_id not in wanted):
            continue
        model, manifest = load_model(rec.run_id)
        new = measure_latency_record(model, int(manifest["image_size"]), threads=threads)
        old = manifest.get("latency") or {}
        store_it = new["comparable"] or not old.get("comparable")
        if store_it:
            _store_latency(rec.run_id, manifest, new)
        rows.append({"run_id": rec.run_id, "model": manifest["model"], "old_ms": old.get("ms"),
                     "ms": round(new["ms"], 3), "other_cpu": new["other_cpu"],
                     "load_avg": new["load_avg"], "comparable": new["comparable"],
                     "stored": store_it})
        report(f"{rec.run_id}: {new['ms']:.1f} ms ({words.counted(new['threads'], 'thread')}, "
               f"other processes {new['other_cpu']} cores, load {new['load_avg']}) "
               f"{'comparable' if new['comparable'] else 'NOT comparable'}"
               f"{'' if store_it else '; kept the stored comparable one'}")
    _resum_ensembles(store)
    store.write_leaderboard()
    return rows


def _store_latency(run_id: str, manifest: dict[str, Any], record: dict[str, Any]) -> None:
    from emotion_core import store

    headline = dict(manifest.get("headline") or {}, latency_ms=headline_latency(record))
    store.update_run_manifest(run_id, {"latency": record, "headline": headline})
    rec = store.load_run(run_id, tables=False)
    cost = dict(rec.metrics.get("cost") or {}, latency_ms=headline["latency_ms"], latency=record)
    store.update_run_metrics(run_id, {"cost": cost})


def _resum_ensembles(store: Any) -> None:
    """An ensemble's latency is its members' sum (None unless every member's is comparable)."""
    runs, _ = store.list_runs()
    by_id = {r.run_id: r for r in runs}
    for rec in runs:
        if not rec.is_ensemble:
            continue
        parts = [by_id[m].manifest.get("headline", {}).get("latency_ms") if m in by_id else None
                 for m in rec.manifest.get("members", [])]
        total = None if not parts or any(v is None for v in parts) else round(sum(parts), 3)
        headline = dict(rec.manifest.get("headline") or {}, latency_ms=total)
        store.update_run_manifest(rec.run_id, {"headline": headline})
