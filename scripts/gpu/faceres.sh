#!/usr/bin/env bash
# A body pretrained on faces against ImageNet's, on a lent GPU (docs/gpu.md#a-body-pretrained-on-faces-faceressh):
# faceres_mobilenet (HSE-FaceRes, VGGFace2) and mobilenet_v2 (ImageNet) fine-tuned side by side
# with the bundled MobileNetV2's validated recipe at 224 px, seeds 0 and 1, in one wave, so the
# two bodies are compared as a ratio within one call. The CPU's rule applies to the result: the
# face body replaces the bundled recipe if its validation macro-F1 over both sets beats
# MobileNetV2's by 0.005 (docs/results.md#a-body-pretrained-on-faces).
# Usage: bash scripts/gpu/faceres.sh PACK_DIR OUT_DIR
#   PACK_DIR  made here by `python -m scripts.gpu.pack_remote --data A --data B --crop-faces
#             --align-faces --weights mobilenet_v2,faceres_mobilenet ...`
#   OUT_DIR   what comes back: runs.tar.gz (the four runs' tables, per-image answers included,
#             and the faceres bundle candidate without weights), its fp16 weights, train.log
# SMOKE=1 runs the same stages with tiny models for a local check of the script.
set -uo pipefail
source "$(dirname "$0")/lib.sh"
machine_setup "$1" "$2"
size=$([ "$smoke" = 1 ] && echo 32 || echo 224)
DEADLINE=${DEADLINE:-540}  # seconds into the call by which the wave has ended

decode_cache "$size"

# the bundled MobileNetV2's validated command (docs/results.md#sharpness-aware-minimisation),
# at the GPU's 224 px; the pack's crops are turned upright already (pack_remote --align-faces)
recipe="--image-size $size --epochs 14 --patience 3 --head-epochs 1 --lr 0.001 --finetune-lr 0.0002 \
--mixup 0.2 --sam 0.05 --budget-tflop 0"
for seed in 0 1; do
  launch "faceres-$seed" faceres_mobilenet $recipe --seed "$seed"
  launch "mobilenet-$seed" mobilenet_v2 $recipe --seed "$seed"
done
wave_to_deadline

bundle_models -gpu faceres_mobilenet
send_weights
pack_tables "the bundled MobileNetV2's validated recipe at 224 px, face crops of affectnet3+webfaces3 \
(as the pack cut them: see each run's framing) (192 px WebP q75), seeds 0 and 1; the four runs \
trained side by side, so their seconds and CPU latencies were taken under load"
ls -la "$out" | tee -a "$log"
