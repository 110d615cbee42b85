#!/usr/bin/env bash
# Faithfulness of every registry model trained with the full profile on synthetic faces, on a lent
# GPU machine (docs/gpu.md, docs/interpretability.md). Nothing travels but the code and the offline weights:
# the faces (with their brow+mouth masks) are drawn there.
# Usage: bash scripts/gpu/faithfulness.sh WEIGHTS_DIR OUT_DIR [N_FACES] [BUDGET_TFLOP] [MODELS]
#   WEIGHTS_DIR  weights/<model>/model.safetensors, made here by `python -m scripts.gpu.pack_remote`
#   OUT_DIR      gets train.log, faithfulness.log and the exported tables (metrics.json holds the
#                scores); at most 8 files, the most a lent machine sends back
# BUDGET_TFLOP caps each model's training compute (scripts.train --budget-tflop; 0 = the full
# profile's epochs): counted, not timed, so the schedule does not depend on the machine. The
# default 2000 is the old 30 s wall-clock default at ~65 TFLOP/s (ResNet-34 in the H200 reference
# run); a rough conversion not yet checked on a GPU, so TRAIN_TIMEOUT still guards the stage.
# TRAIN_TIMEOUT / FAITH_TIMEOUT (seconds) cap the two stages, so the tables are written whatever
# happens; runs finished before a cut keep their scores.
set -uo pipefail
weights=$1 out=$2 n=${3:-3000} budget=${4:-2000} models=${5:-all}
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 EMOTION_WEIGHTS_DIR=$weights
export EMOTION_ARTIFACTS=${EMOTION_ARTIFACTS:-$PWD/.device_cache/faithfulness}
data=$EMOTION_ARTIFACTS/synthetic224
mkdir -p "$out"
device=$(python3 -c 'import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu")')
echo "device: $device; faces: $n at 224 px; models: $models; budget: ${budget} TFLOP/model"
python3 -m scripts.get_data synthetic --out "$data" --n "$n" --size 224 --workers "$(nproc)" \
  2>/dev/null | tail -1 || exit 1
timeout "${TRAIN_TIMEOUT:-330}" python3 -m scripts.train --data "$data" --name synthetic \
  --models "$models" --profile full --pretrained --budget-tflop "$budget" --ensemble none --quiet \
  2>&1 | tee "$out/train.log"
timeout "${FAITH_TIMEOUT:-200}" python3 - "$data" <<'EOF' 2>&1 | grep -v '%|' | tee "$out/faithfulness.log"
import sys, time, traceback
from emotion_core import store
from scripts import explain

runs = [r for r in store.list_runs()[0] if not r.is_ensemble]
for rec in sorted(runs, key=lambda r: r.run_id):
    t = time.perf_counter()
    args = ["--run", rec.run_id, "--faithfulness", "--data", sys.argv[1], "--cam-layers", "stages"]
    try:
        rc = explain.main([*args, "--device", "auto"])
    except Exception:  # a GPU-only failure must not cost the other runs their scores
        traceback.print_exc()
        rc = explain.main([*args, "--device", "cpu"])
    print(f"[{rec.run_id}: exit {rc}, {time.perf_counter() - t:.1f} s]\n", flush=True)
EOF
python3 -m scripts.gpu.export_reference --out "$out" --dataset synthetic --note "full profile on \
$device ($(python3 -c 'import torch; print("torch", torch.__version__)')), $n synthetic faces at \
224 px, budget ${budget} TFLOP/model; faithfulness on 32 test faces per run"
