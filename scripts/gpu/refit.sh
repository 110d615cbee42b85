#!/usr/bin/env bash
# Refit a bundled candidate on a lent GPU (docs/gpu.md): the recipe its validated run chose
# (real_faces.sh), trained on train + val for that run's best epoch count (docs/training.md#refit),
# then bundled and sent back as real_faces.sh sends its candidates, for install_results.
# Usage: bash scripts/gpu/refit.sh PACK_DIR OUT_DIR MODEL EPOCHS [train options]
#   the options are the validated run's, without --patience (a refit does not stop early)
# SMOKE=1 runs it with a tiny model for a local check of the script.
set -uo pipefail
source "$(dirname "$0")/lib.sh"
machine_setup "$1" "$2"
model=$3 epochs=$4
shift 4
t0=$SECONDS
python3 -m scripts.train --data "$data" --models "$model" --profile full --crop-faces \
  --refit --epochs "$epochs" --ensemble none --quiet $extra "$@" >>"$log" 2>&1
echo "[refit $model --epochs $epochs $* -> exit $? in $((SECONDS - t0)) s]" | tee -a "$log"
bundle_models -gpu "$model"
send_weights
pack_tables "full profile, face crops of $(basename "$data") at 224 px (as the pack cut them), \
refit on train + val for $epochs epochs; alone on the machine"
ls -la "$out" | tee -a "$log"
