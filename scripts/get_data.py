"""Fetch or generate a dataset: the offline synthetic faces, or Kaggle HES through kagglehub.

    python -m scripts.get_data synthetic [--out DIR] [--n N] [--seed S] [--size PX] [--force]
    python -m scripts.get_data hes [--out DIR] [--timeout SECONDS]

The last line printed is the image-folder root to pass to `scripts.prepare_data --data`.
`hes` checks that www.kaggle.com is reachable (a few seconds at most) before kagglehub is asked
for anything, so an offline machine gets one sentence and exit code 2 instead of retries and a
traceback; EMOTION_OFFLINE=1 skips the probe and behaves as offline. A copy already in the
kagglehub cache is used when offline.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path
from urllib.parse import urlparse

from emotion_core import network, store
from emotion_core.data import synthetic
from emotion_core.data.layout import IMAGE_EXTENSIONS

HES_HANDLE = "muhammadhananasghar/human-emotions-datasethes"
KAGGLE_HOST = ("www.kaggle.com", 443)
OFFLINE_ENV = "EMOTION_OFFLINE"
SPLIT_NAMES = {"train", "valid", "validation", "val", "test"}


class UserError(Exception):
    """A problem the user can fix; printed as one sentence with exit code 2."""


# ---------------------------------------------------------------------------------------------
# synthetic


def run_synthetic(args: argparse.Namespace) -> Path:
    out = Path(args.out) if args.out else store.paths.generated_data_dir(synthetic.DEMO_DATASET)
    try:
        if not args.force and synthetic.dataset_matches(out, args.n, args.size, args.seed):
            print(f"{out} already holds {args.n} synthetic faces (seed {args.seed}, "
                  f"{args.size} px); nothing to do (use --force to redraw).")
            return out
        return synthetic.generate_dataset(out, n=args.n, size=args.size, seed=args.seed,
                                          progress=not args.quiet, force=True,
                                          workers=args.workers if args.n >= 200 else 1)
    except (ValueError, FileExistsError) as exc:
        raise UserError(str(exc)) from exc
    except OSError as exc:
        raise UserError(f"could not write the synthetic dataset to {out}: {exc}") from exc


# ---------------------------------------------------------------------------------------------
# hes


def _probe_target() -> tuple[str, int]:
    """Where a connection must succeed for kagglehub to work: the HTTPS proxy if one is set."""
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    if proxy:
        parsed = urlparse(proxy if "://" in proxy else f"http://{proxy}")
        if parsed.hostname:
            return parsed.hostname, parsed.port or 8080
    return KAGGLE_HOST


def kaggle_reachable(timeout: float = 3.0) -> bool:
    """True when a TCP connection to Kaggle (or the HTTPS proxy) opens within `timeout` seconds.

    Runs in a daemon thread so a hanging DNS lookup cannot stretch the wait past the timeout.
    """
    host, port = _probe_target()
    return network.host_answers(host, port, timeout)


def cached_hes() -> Path | None:
    """The newest complete copy of HES in the kagglehub cache, if any (usable offline)."""
    try:
        from kagglehub.cache import Cache
        from kagglehub.config import get_cache_folder
        from kagglehub.handle import parse_dataset_handle
    except ImportError:
        return None
    versions_dir = Path(get_cache_folder(), "datasets", *HES_HANDLE.split("/"), "versions")
    if not versions_dir.is_dir():
        return None
    versions = sorted((int(p.name) for p in versions_dir.iterdir() if p.name.isdigit()), reverse=True)
    for version in versions:
        try:
            hit = Cache().load_from_cache(parse_dataset_handle(f"{HES_HANDLE}/versions/{version}"))
        except Exception:  # noqa: BLE001 - a kagglehub API change must not crash the fallback
            hit = None
        if hit:
            return Path(hit)
    return None


def _class_dirs(folder: Path) -> dict[str, Path]:
    return {p.name.lower(): p for p in folder.iterdir() if p.is_dir()}


def find_image_root(base: Path, classes: tuple[str, ...] = ("angry", "happy", "sad")) -> Path:
    """The shallowest folder under `base` laid out as `<class>/*` or `<split>/<class>/*`."""
    def is_root(d: Path) -> bool:
        sub = _class_dirs(d)
        if all(c in sub for c in classes):
            return True
        splits = [p for name, p in sub.items() if name in SPLIT_NAMES]
        return bool(splits) and all(all(c in _class_dirs(s) for c in classes) for s in splits)

    queue = [Path(base)]
    while queue:  # breadth-first, so the shallowest match wins
        d = queue.pop(0)
        if is_root(d):
            return d
        queue.extend(sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith(".")))
    raise UserError(f"no folder under {base} holds {'/'.join(classes)} class folders")


def link_tree(src_root: Path, dst: Path) -> int:
    """Mirror the images of `src_root` into `dst` with lower-cased folder names.

    Hard links when possible (no extra disk space), copies across file systems. Returns the
    number of images. Lower-casing makes `Angry/` and `angry/` the same class downstream.
    """
    count = 0
    for path in sorted(src_root.rglob("*")):
        if not path.is_file() or path.suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        rel = path.relative_to(src_root)
        target = dst.joinpath(*(part.lower() for part in rel.parts[:-1]), rel.name)
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            try:
                os.link(path, target)
            except OSError:
                shutil.copy2(path, target)
        count += 1
    return count


def run_hes(args: argparse.Namespace) -> Path:
    offline = os.environ.get(OFFLINE_ENV, "").lower() in {"1", "true", "yes"}
    if not offline and not kaggle_reachable(args.timeout):
        offline = True
    if offline:
        downloaded = cached_hes()
        if downloaded is None:
            raise UserError("cannot reach www.kaggle.com, so the HES dataset cannot be "
                            "downloaded; connect to the internet (or use `python -m "
                            "scripts.get_data synthetic` for the offline demo faces).")
        print(f"offline: using the cached HES copy at {downloaded}")
    else:
        try:
            import kagglehub
        except ImportError as exc:
            raise UserError("kagglehub is not installed; run `pip install kagglehub`.") from exc
        try:
            downloaded = Path(kagglehub.dataset_download(HES_HANDLE))
        except Exception as exc:  # noqa: BLE001 - kagglehub raises many types; report one line
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(f"kagglehub could not download {HES_HANDLE}: {reason.rstrip('.')}.") from exc
    root = find_image_root(downloaded)
    if args.out:
        out = Path(args.out)
        n = link_tree(root, out)
        print(f"linked {n} images from {root} into {out}")
        return out
    return root


# ---------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m scripts.get_data", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="source", required=True)
    syn = sub.add_parser("synthetic", help="draw the offline demo faces (brow+mouth masks)")
    syn.add_argument("--out", help="output folder (default: artifacts/data/synthetic)")
    syn.add_argument("--n", type=int, default=1500, help="number of images (balanced classes)")
    syn.add_argument("--seed", type=int, default=0, help="random seed (same seed, same pixels)")
    syn.add_argument("--size", type=int, default=128, help="image side in pixels")
    syn.add_argument("--force", action="store_true", help="redraw even if the folder matches")
    syn.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                     help="processes drawing in parallel (same pixels for any value)")
    syn.add_argument("--quiet", action="store_true", help="no progress bar")
    hes = sub.add_parser("hes", help="download Kaggle HES with kagglehub (needs internet)")
    hes.add_argument("--out", help="also mirror the image folders here (hard links)")
    hes.add_argument("--timeout", type=float, default=3.0, help="connectivity probe timeout (s)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        root = run_synthetic(args) if args.source == "synthetic" else run_hes(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted.", file=sys.stderr)
        return 130
    print(root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
