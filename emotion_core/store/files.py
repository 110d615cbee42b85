"""Atomic file writers and readers: a crash never leaves a half-written file or folder.

Every write goes to a temporary name in the same folder and is renamed into place; a folder is
assembled under a temporary name and renamed as a whole (`publish_dir`).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def mode_for_file() -> int:
    """What open() would give a new file under the process umask (mkstemp gives 0600)."""
    return 0o666 & ~_umask()


def mode_for_dir() -> int:
    """What mkdir() would give a new folder under the process umask (mkdtemp gives 0700)."""
    return 0o777 & ~_umask()


def make_temp_dir(final: Path) -> Path:
    """A temporary folder beside `final`, with ordinary permissions, to assemble it in."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    os.chmod(tmp, mode_for_dir())
    return tmp


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it into place only if the block succeeds.

    The file gets the permissions an ordinary write would (the umask), so an app running as
    another user can read what the scripts wrote."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        if Path(tmp).exists():
            os.chmod(tmp, mode_for_file())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def publish_dir(tmp: Path, final: Path) -> None:
    """Move a fully written folder `tmp` to `final`, replacing any old one only once the new one
    is complete, so readers see the old folder or the new one, never a half-written one."""
    if final.exists():
        old = final.with_name(f".{final.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)


def write_json(path: Path, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def write_csv(path: Path, df: pd.DataFrame) -> None:
    """A `.csv.gz` path is written gzip-compressed (named here: the temporary name hides it)."""
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, compression="gzip" if str(path).endswith(".gz") else None)


def read_csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path)  # compression inferred from the name


def write_png(path: Path, rgb: np.ndarray) -> None:
    """Write an RGB (or grayscale) uint8 array as PNG."""
    with atomic_path(path) as tmp:
        Image.fromarray(np.asarray(rgb, dtype=np.uint8)).save(tmp, format="PNG")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
