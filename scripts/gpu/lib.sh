# Shared by real_faces.sh and refit.sh (sourced, not run): the machine's setup, bundling the
# candidates and packing what comes back.

machine_setup() {  # machine_setup PACK OUT: sets RF, out, data and log, the store under $RF
  local pack=$1
  out=$2
  RF=${RF:-/tmp/rf}
  export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 EMOTION_ARTIFACTS=$RF/artifacts
  export EMOTION_WEIGHTS_DIR=$RF/weights EMOTION_BUNDLED=$RF/bundled
  mkdir -p "$RF/weights" "$out"
  cp -r "$pack"/weights/* "$RF/weights/" 2>/dev/null
  data=$(ls -d "$pack"/data/* | head -1)
  log=$out/train.log
  echo "gpu: $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 || echo none);" \
    "torch $(python3 -c 'import torch; print(torch.__version__)'); data: $data" | tee -a "$log"
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
