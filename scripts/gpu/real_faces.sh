#!/usr/bin/env bash
# Real-face models on a lent GPU (docs/gpu.md): the bundled candidates (small pretrained CNNs and
# DINOv2-S, fine-tuned on face crops of all the real training data, flip TTA, label smoothing),
# a linear probe for comparison, and the full-profile reference of every other architecture.
# Usage: bash scripts/gpu/real_faces.sh PACK_DIR OUT_DIR
#   PACK_DIR  made here by `python -m scripts.gpu.pack_remote --data A --data B --crop-faces ...`
#             (data/<a+b>/ and weights/<model>/); DINOv2's weights may already lie in
#             $RF/weights from an earlier call on the same warm machine (they do not fit beside
#             the data in one call's 64 MiB).
#   OUT_DIR   what comes back (at most 8 files): runs.tar.gz (every run's tables and the bundled
#             candidates' folders without weights), each candidate's fp16 weights (DINOv2's in
#             15 MiB parts), train.log.
# The runs of a wave train side by side: one model at batch 64 keeps an H200 mostly idle (the
# 2026-11-27 reference runs: DINOv2-S at 15 TFLOP/s), so processes sharing it finish sooner than
# in a row. Epoch counts are fixed; a wave's time limit only stops what would overrun the call,
# and a run it stops is lost whole (the log says so). Per-epoch seconds and the CPU latency of
# these runs were taken while other runs shared the machine: their records say so.
# SMOKE=1 runs the same stages with tiny models for a local check of the script.
set -uo pipefail
source "$(dirname "$0")/lib.sh"
machine_setup "$1" "$2"
size=$([ "$smoke" = 1 ] && echo 32 || echo 224)
DEADLINE=${DEADLINE:-540}  # seconds into the call by which every wave has ended
WAVE1=${WAVE1:-270}        # the candidates' wave, at most

decode_cache "$size"  # once, before the runs of a wave that all read it

cnn="--epochs 14 --head-epochs 2 --lr 1e-3 --finetune-lr 3e-4 --patience 5"
# mixup joined the bundled MobileNetV2's recipe on CPU validation (docs/results.md#mixup), as did
# faces turned upright, which the pack carries (pack_remote --align-faces)
launch mobilenet_v2 mobilenet_v2 $cnn --mixup 0.2
launch efficientnet_lite0 efficientnet_lite0 $cnn
if [ -f "$RF/weights/dinov2_small/model.safetensors" ] || [ "$smoke" = 1 ]; then
  launch dinov2_small dinov2_small --epochs 10 --head-epochs 1 --lr 1e-3 --finetune-lr 3e-4 \
    --layer-decay 0.75 --patience 4
else
  echo "[dinov2_small skipped: its weights did not reach this machine]" | tee -a "$log"
fi
launch probe dinov2_small,mobilenet_v2 --recipe probe
wave "$WAVE1"

note="full profile, face crops of affectnet3+webfaces3 at 224 px (as the pack cut them: see each \
run's framing) (192 px WebP q75), flip TTA, label smoothing 0.1; runs of a wave trained side by \
side, so their seconds and CPU latencies were taken under load"
ensembles() {
timeout 60 python3 - >>"$log" 2>&1 <<'EOF'
from emotion_core import store
from emotion_core.evaluation import ensemble

runs = {r.manifest["model"]: r.run_id for r in store.list_runs()[0]
        if r.manifest.get("kind") == "model" and r.manifest["recipe"].get("name") != "probe"}
for mode, members in (("default", [runs.get("resnet34"), runs.get("efficientnet_b4")]),
                      ("greedy", None)):
    try:
        ids = members if members else ensemble.greedy_subset(list(runs.values()))
        if None not in ids and len(ids) > 1:
            print("ensemble", mode, ensemble.build_ensemble(ids, label=mode))
        else:  # say why, so the log never leaves a missing ensemble unexplained
            print("ensemble", mode, "not built: members", ids)
    except Exception as exc:  # an ensemble must not cost the rest
        print("ensemble", mode, "failed:", exc)
EOF
}
bundle_models -gpu mobilenet_v2 efficientnet_lite0 dinov2_small
send_weights
pack_tables "$note"  # sent now too: a call cut short still brings the candidates back whole

ref="--lr 5e-4 --patience 4"
launch resnet34 resnet34 --epochs 12 $ref
launch vgg16 vgg16 --epochs 10 $ref
launch vit_scratch vit_scratch --epochs 20 $ref
launch vit_hf vit_hf --epochs 8 $ref
launch efficientnet_b4 efficientnet_b4 --epochs 8 $ref
wave_to_deadline

ensembles
pack_tables "$note"
ls -la "$out" | tee -a "$log"
