#!/usr/bin/env bash
# Refit a bundled candidate on a lent GPU (docs/gpu.md): the recipe its validated run chose
# (real_faces.sh), trained on train + val for that run's best epoch count (docs/training.md#refit),
# then bundled and sent back as real_faces.sh sends its candidates, for install_results.
# Usage: bash scripts/gpu/refit.sh PACK_DIR OUT_DIR MODEL EPOCHS [train options]
#   the options are the validated run's, without --patience (a refit does not stop early)
# SMOKE=1 runs it with a tiny model for a local check of the script.
set -uo pipefail
source "$(dirname "$0")/lib.sh"
pack=$1 out=$2 model=$3 epochs=$4
shift 4
RF=${RF:-/tmp/rf}
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 EMOTION_ARTIFACTS=$RF/artifacts
export EMOTION_WEIGHTS_DIR=$RF/weights EMOTION_BUNDLED=$RF/bundled
mkdir -p "$RF/weights" "$out"
cp -r "$pack"/weights/* "$RF/weights/" 2>/dev/null
data=$(ls -d "$pack"/data/* | head -1)
log=$out/train.log
extra=$([ "${SMOKE:-0}" = 1 ] && echo "--dry-run" || true)
echo "gpu: $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 || echo none);" \
  "torch $(python3 -c 'import torch; print(torch.__version__)'); data: $data" | tee -a "$log"
t0=$SECONDS
python3 -m scripts.train --data "$data" --models "$model" --profile full --crop-faces \
  --refit --epochs "$epochs" --ensemble none --quiet $extra "$@" >>"$log" 2>&1
echo "[refit $model --epochs $epochs $* -> exit $? in $((SECONDS - t0)) s]" | tee -a "$log"
bundle_models -gpu "$model"
send_weights
pack_tables "full profile, face crops of $(basename "$data") at 224 px (as the pack cut them), \
refit on train + val for $epochs epochs; alone on the machine"
ls -la "$out" | tee -a "$log"
