"""Install what `scripts/gpu/real_faces.sh` sent back: the reference set and the bundled models.

    python -m scripts.gpu.install_results --from DIR --reference NAME [--card-note TEXT]

DIR holds runs.tar.gz, the candidates' fp16 weights (`<bundle>.safetensors`, or `<bundle>.partNN`
pieces) and train.log. The reference tables land in `store.paths.reference_dir()/NAME` (with the
log); each bundled folder is reassembled with its weights in `store.paths.bundled_dir()`, its
weights checked against the hash its manifest recorded on the GPU machine, and its model card
written (views.model_card). Nothing is installed when a check fails.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

from emotion_core import store
from emotion_core.store.files import file_sha256, publish_dir, read_json
from emotion_core.views.model_card import model_card


def _weights(src: Path, name: str, dest: Path) -> None:
    whole = src / f"{name}.safetensors"
    parts = sorted(src.glob(f"{name}.part*"))
    if whole.is_file():
        shutil.copyfile(whole, dest)
    elif parts:
        with open(dest, "wb") as out:
            for part in parts:
                out.write(part.read_bytes())
    else:
        raise FileNotFoundError(f"no weights for bundle {name} in {src}")


def install(src: Path, reference: str, note: str = "") -> list[str]:
    """Install the reference set and every bundle; returns the bundle ids."""
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(src / "runs.tar.gz") as tar:
            tar.extractall(tmp, filter="data")
        unpacked = Path(tmp)
        ref_dest = store.paths.reference_dir() / store.paths.checked("reference set", reference)
        bundles = sorted(p for p in (unpacked / "bundled").glob("*") if p.is_dir()) \
            if (unpacked / "bundled").is_dir() else []
        for folder in bundles:
            _weights(src, folder.name, folder / store.paths.WEIGHTS)
            manifest = read_json(folder / store.paths.MANIFEST)
            if file_sha256(folder / store.paths.WEIGHTS) != manifest.get("weights_sha256"):
                raise ValueError(f"bundle {folder.name}: weights do not match the hash recorded "
                                 f"on the GPU machine; nothing installed")
        if (src / "train.log").is_file():
            shutil.copyfile(src / "train.log", unpacked / "reference" / "train.log")
        ref_dest.parent.mkdir(parents=True, exist_ok=True)
        publish_dir(unpacked / "reference", ref_dest)
        ids = []
        for folder in bundles:
            final = store.paths.bundled_dir() / folder.name
            final.parent.mkdir(parents=True, exist_ok=True)
            publish_dir(folder, final)
            (final / store.paths.MODEL_CARD).write_text(model_card(folder.name, note=note))
            ids.append(folder.name)
    return ids


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m scripts.gpu.install_results",
                                description=__doc__.split("\n")[0])
    p.add_argument("--from", dest="src", required=True, type=Path)
    p.add_argument("--reference", required=True, help="name of the reference set to create")
    p.add_argument("--card-note", default="", help="a sentence added to every model card")
    args = p.parse_args(argv)
    try:
        ids = install(args.src, args.reference, args.card_note)
    except (OSError, ValueError, tarfile.TarError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"reference set {args.reference} installed; bundled: {', '.join(ids) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
