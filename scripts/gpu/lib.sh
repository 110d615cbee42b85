# Shared by real_faces.sh, converge.sh and refit.sh (sourced, not run): the machine's setup,
# training runs side by side in waves, bundling the candidates and packing what comes back.

machine_setup() {  # machine_setup PACK OUT: sets RF, out, data and log, the store under $RF
  local pack=$1
  out=$2
  RF=${RF:-/tmp/rf}
  export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 EMOTION_ARTIFACTS=$RF/artifacts
  export EMOTION_WEIGHTS_DIR=$RF/weights EMOTION_BUNDLED=$RF/bundled
  mkdir -p "$RF/weights" "$RF/logs" "$out"
  cp -r "$pack"/weights/* "$RF/weights/" 2>/dev/null
  data=$(ls -d "$pack"/data/* | head -1)
  log=$out/train.log
  smoke=${SMOKE:-0}  # SMOKE=1: every stage with tiny models, for a check on the CPU
  extra=$([ "$smoke" = 1 ] && echo "--dry-run" || true)
  echo "gpu: $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 || echo none);" \
    "torch $(python3 -c 'import torch; print(torch.__version__)'); data: $data" | tee -a "$log"
}

decode_cache() {  # decode_cache SIZE: the pack's images decoded at SIZE px into the shared cache
  timeout 90 python3 -c "import sys; from pathlib import Path; from emotion_core.data import cache_export
cache_export.load_exported_cache(Path(sys.argv[1]), size=int(sys.argv[2]), progress=False)" \
    "$data" "$1" >>"$log" 2>&1
  echo "[cache at $1 px -> exit $? in $SECONDS s]" | tee -a "$log"
}

names=()
launch() {  # launch NAME MODEL [options]: one training process in the background
  local name=$1 model=$2; shift 2
  ( t0=$SECONDS
    OMP_NUM_THREADS=3 python3 -m scripts.train --data "$data" --models "$model" \
      --profile full --crop-faces --tta-flip --label-smoothing 0.1 --ensemble none --quiet \
      --events "$RF/logs/$name.events" $extra "$@" >"$RF/logs/$name.log" 2>&1
    rc=$?
    [ $rc = 143 ] && rc="$rc (stopped at the wave's limit: run lost)"
    echo "[$name: $model $* -> exit $rc in $((SECONDS - t0)) s]" >>"$RF/logs/$name.log" ) &
  names+=("$name")
}
wave() {  # wave SECONDS: wait for the launched runs, stopping any still running after SECONDS
  local secs=$1 t0=$SECONDS
  [ "$smoke" = 1 ] && secs=300
  while [ $((SECONDS - t0)) -lt "$secs" ] && [ -n "$(jobs -rp)" ]; do sleep 2; done
  for pid in $(jobs -rp); do pkill -TERM -P "$pid" 2>/dev/null; done  # the runs, not their shells
  wait
  for name in "${names[@]}"; do
    grep -q "^\[$name:" "$RF/logs/$name.log" || echo "[$name: stopped at the wave's limit, run lost]" >>"$RF/logs/$name.log"
    epoch_lines "$name" >>"$RF/logs/$name.log"  # a run lost at the limit still tells its epochs
    cat "$RF/logs/$name.log" >>"$log"
    grep "^\[$name:" "$RF/logs/$name.log"
  done
  echo "[wave ended $((SECONDS - t0)) s after it began, $SECONDS s into the call]" | tee -a "$log"
  names=()
}

epoch_lines() {  # epoch_lines NAME: one line per finished epoch of a run, from its events file
  timeout 30 python3 - "$RF/logs/$1.events" "$1" <<'EOF'
import json, sys
from pathlib import Path

events = Path(sys.argv[1])
lines = events.read_text().splitlines() if events.exists() else []
for e in map(json.loads, lines):
    if e.get("event") == "epoch_finished":
        m = e["metrics"]
        print(f"  {sys.argv[2]} epoch {e['epoch']}/{e['epochs']} {e['phase']}: train loss "
              f"{m['train_loss']:.4f} acc {m['train_acc']:.3f} | val acc {m['val_acc']:.3f} "
              f"macro-F1 {m['val_macro_f1']:.3f}{' *' if e['improved'] else ''} ({e['seconds']:.1f} s)")
EOF
}

wave_to_deadline() {  # the call's last wave: until $DEADLINE seconds into the call (30 s at least)
  local left=$((DEADLINE - SECONDS))
  wave $((left > 30 ? left : 30))
}

bundle_models() {  # bundle_models SUFFIX MODEL...: bundle each model's latest fine-tune run
timeout 60 python3 - "$@" >>"$log" 2>&1 <<'EOF'
import sys
from emotion_core import store
from emotion_core.store import bundle

suffix, wanted = sys.argv[1], sys.argv[2:]
runs = {r.manifest["model"]: r.run_id for r in store.list_runs()[0]
        if r.manifest.get("kind") == "model" and r.manifest["recipe"].get("name") != "probe"}
print("runs:", runs)
for model in wanted:
    if model in runs:  # the suffix keeps them beside, not over, the bundles already shipped
        path = bundle.bundle_run(runs[model], "model card written when the bundle is installed",
                                 bundle_id=f"realfaces-{model}{suffix}")
        print("bundled", model, path)
EOF
}

send_weights() {  # each bundle's weights, in 15 MiB parts where larger (16 MiB come back at most)
for dir in "$RF"/bundled/*/; do
  [ -d "$dir" ] || continue
  name=$(basename "$dir")
  if [ "$(stat -c %s "$dir/weights.safetensors")" -gt 15728640 ]; then
    split -b 15M -d "$dir/weights.safetensors" "$out/$name.part"
  else
    cp "$dir/weights.safetensors" "$out/$name.safetensors"
  fi
done
}

pack_tables() {  # pack_tables NOTE: every run's tables (a reference set), bundles without weights
  rm -rf "$RF/reference"
  python3 -m scripts.gpu.export_reference --out "$RF/reference" --note "$1; on \
$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1), \
$(python3 -c 'import torch; print("torch", torch.__version__)')" >>"$log" 2>&1
  tar -czf "$out/runs.tar.gz" --exclude=weights.safetensors -C "$RF" reference \
    $(cd "$RF" && ls -d bundled 2>/dev/null)
}
