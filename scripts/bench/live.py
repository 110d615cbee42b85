"""Benchmark live webcam processing: labelled frames per second at 640x480 (views.live_video).

    python -m scripts.bench.live [--models mobilenet_v2,efficientnet_lite0] [--size 112]
                                 [--frames 150] [--threads 1,2] [--every 1,2,3] [--run RUN_ID ...]

Runs `LiveSession.process` (detection every Nth frame, crops, every run's forward, EMA smoothing
and drawing) on a 640x480 frame with one synthetic face, in this process, no browser or WebRTC
(decoding and re-encoding the video costs extra; see the browser test's figure in docs/app.md).
Models are the registry's, built at `--size` with random weights (speed does not depend on
them), or stored runs given with `--run`, answering as in the app (their ONNX export where they
have one) or, with `--engines torch` or `predict,torch`, through PyTorch. Prints one line per
setting: FPS over all frames after 5 warm-up frames, mean and p90 per-frame latency, mean
detection time.

`--beside N` measures instead what a frozen frame costs while the stream goes on: a worker
thread runs `LiveSession.process` back to back (one torch thread, as in the app) while this
thread detects the face and classifies its crop with every model, N times with one torch
thread and N times with torch's default, interleaved; prints the median of each and the ratio.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _models(names: list[str], size: int, run_ids: list[str], engines: tuple[str, ...] = ("predict",)):
    from emotion_core.models import REGISTRY, build_model
    from emotion_core.views.live_video import LiveModel
    from scripts.bench.predict_cost import engine_loaders

    out = []
    loaders = engine_loaders(engines, run_ids, threads=1) if run_ids else {}
    for loader in loaders.values():
        for rid in run_ids:
            model, manifest = loader(rid)
            name = f"{rid} [{getattr(model, 'engine', 'torch')}]"
            out.append(LiveModel(rid, name, model, manifest))
    for name in names:
        spec = REGISTRY[name]
        model, _ = build_model(name, 3, pretrained=False, image_size=size)
        model.eval()
        manifest = {"model": name, "classes": ["angry", "happy", "sad"], "image_size": size,
                    "mean": list(spec.mean), "std": list(spec.std)}
        out.append(LiveModel(name, name, model, manifest))
    return out


def measure(models, frame, every: int, n_frames: int) -> dict[str, float]:
    from emotion_core.views.live_video import LiveSession

    s = LiveSession()
    s.configure(models, detect_every=every, window=5)
    for _ in range(5):
        s.process(frame)
    lat, det = [], []
    t0 = time.perf_counter()
    for _ in range(n_frames):
        t = time.perf_counter()
        s.process(frame)
        lat.append((time.perf_counter() - t) * 1000)
        det.append(s.stats().detect_ms)
    wall = time.perf_counter() - t0
    lat.sort()
    return {"fps": n_frames / wall, "mean_ms": statistics.fmean(lat),
            "p90_ms": lat[int(0.9 * (len(lat) - 1))], "detect_ms": statistics.fmean(det),
            "faces": s.stats().faces}


def measure_beside(models, frame, pairs: int) -> dict[int, list[float]]:
    """Frozen-frame analysis times (ms) per torch thread count, beside a streaming worker."""
    import threading

    import torch

    from emotion_core.data import faces
    from emotion_core.evaluation.inference import set_threads
    from emotion_core.views.live import FaceCrops
    from emotion_core.views.live_video import LiveSession, classify

    def analyse() -> float:
        t = time.perf_counter()
        for box in faces.find_faces(frame).boxes:
            for m in models:
                classify(m.model, m.manifest, [FaceCrops(frame, box).for_run(m.manifest)])
        return (time.perf_counter() - t) * 1000

    default = torch.get_num_threads()
    stop = threading.Event()
    session = LiveSession()  # one torch thread in its worker, as in the app
    session.configure(models)

    def stream() -> None:
        while not stop.is_set():
            session.process(frame)

    worker = threading.Thread(target=stream, daemon=True)
    worker.start()
    times: dict[int, list[float]] = {1: [], default: []}
    try:
        analyse()  # warm-up
        for i in range(pairs):
            for n in (1, default) if i % 2 else (default, 1):
                set_threads(n)
                times[n].append(analyse())
    finally:
        stop.set()
        worker.join()
    return times


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="mobilenet_v2,efficientnet_lite0",
                   help="registry models, comma-separated; each is measured alone")
    p.add_argument("--size", type=int, default=112, help="model input side (quick profile: 112)")
    p.add_argument("--frames", type=int, default=150)
    p.add_argument("--threads", default="1,2", help="torch intra-op threads to try")
    p.add_argument("--every", default="1,2,3", help="detect faces every N frames, N to try")
    p.add_argument("--run", action="append", default=[], help="a stored run to measure instead")
    p.add_argument("--engines", default="predict",
                   help="for --run: predict (as the app: the run's ONNX export through ONNX "
                        "Runtime, one thread, where it has one), torch, or both, one after "
                        "the other per setting")
    p.add_argument("--beside", type=int, default=0, metavar="N",
                   help="measure a frozen frame's analysis beside a streaming worker instead "
                        "(N interleaved pairs: one torch thread against torch's default)")
    args = p.parse_args(argv)
    import torch

    from scripts.bench.app import photo

    frame = photo(None)
    names = [n for n in args.models.split(",") if n] if not args.run else []
    engines = tuple(dict.fromkeys(e.strip() for e in args.engines.split(",") if e.strip()))
    if not engines or set(engines) - {"predict", "torch"}:
        p.error(f"--engines {args.engines}: give predict, torch or both")
    setups = [[m] for m in _models(names, args.size, args.run, engines)]
    print(f"frame {frame.shape[1]}x{frame.shape[0]}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}")
    if args.beside:
        models = [m for ms in setups for m in ms]
        times = measure_beside(models, frame, args.beside)
        med = {n: statistics.median(v) for n, v in times.items()}
        for n, v in times.items():
            print(f"frozen frame ({', '.join(m.name for m in models)}) beside the stream, "
                  f"threads {n}: median {med[n]:.0f} ms, min {min(v):.0f}, max {max(v):.0f} "
                  f"(n={len(v)})")
        print(f"ratio {max(med)} threads / one: {med[max(med)] / med[1]:.2f}")
        return 0
    for threads in (int(t) for t in args.threads.split(",")):
        torch.set_num_threads(threads)
        for models in setups:
            for every in (int(e) for e in args.every.split(",")):
                r = measure(models, frame, every, args.frames)
                print(f"{models[0].name:18s} {models[0].manifest['image_size']}px threads {threads} "
                      f"detect every {every}: "
                      f"{r['fps']:5.1f} FPS, {r['mean_ms']:5.1f} ms/frame (p90 {r['p90_ms']:.1f}), "
                      f"detection {r['detect_ms']:.1f} ms, faces {r['faces']}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
