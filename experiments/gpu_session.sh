#!/usr/bin/env bash
# The one device check for a session that is lent a GPU: issue 4's GPU figures in a single call.
#
#   From the session's device tool, in the repository root:
#     run(command="bash experiments/gpu_session.sh", timeout_s=600)
#   Anywhere else with a CUDA GPU, jax[cuda], torch and torchvision:
#     OUT=bench_results/gpu bash experiments/gpu_session.sh
#
# What it does, in this order, each step bounded so that one failure or hang leaves the others'
# results (and every step writes under $OUT, which the device tool brings back):
#   1. prints the GPU (nvidia-smi), the machine and the library versions (jaxvision.training.machine);
#   2. checks that everything bench_models.py imports is there: the GPU image has jax, flax, optax,
#      torch, torchvision, numpy and safetensors but not jaxvision's data dependencies (tfds, grain,
#      ml_collections), which the benchmark does not import; jaxvision itself comes from this
#      checkout through PYTHONPATH, nothing is installed;
#   3. experiments/bench_models.py with the GPU recipe (bf16 compute, batch 256, 20 interleaved
#      repetitions; torch channels_last + bf16 autocast + torch.compile), ResNet-50 then ViT-B/16,
#      each in its own process under its own time limit. jaxvision's ViT runs with cuDNN's fused
#      attention (`attention_implementation="cudnn"`), falling back to the XLA form if cuDNN
#      refuses. Each writes results.json with images/s, the ratio to torch.compile and the MFU
#      ("limit ratio": achieved FLOP/s over the best bf16 8192^3 matmul of jax and torch in the
#      same process). results.json is rewritten after every
#      repetition ("complete": false until the last), so a network stopped at its limit keeps the
#      repetitions it timed.
# Targets (issue 4): ResNet-50 bf16 training >= 6,000 images/s on an H100 and >= 1.0x torch.compile;
# ViT-B/16 >= 3,500 images/s.
#
# Budget: a session has 15 minutes of device time in all, the machine's start (1-2 minutes)
# included, and one command may run 10. The limits below keep the whole script under ~9 minutes.
# Checked on a CPU (no session has had a GPU yet): `--recipe=gpu` runs the same code path there.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-bench_results/gpu_session}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD:$PWD/experiments${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
PYTHON="${PYTHON:-python3}"
NETWORK_SECONDS="${NETWORK_SECONDS:-240}"
# Extra bench_models.py arguments, e.g. BENCH_ARGS=--quick for a dry run of the script on a CPU.
read -r -a BENCH_ARGS <<<"${BENCH_ARGS:-}"

echo "== machine"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1 | tee "$OUT/nvidia_smi.txt"
"$PYTHON" -m jaxvision.training.machine 2>&1 | tee "$OUT/machine.txt"

echo "== imports"
if ! "$PYTHON" -c "
import bench_models, jax, torch
bench_models.torchvision_models()
print('jax devices', jax.devices(), '| torch cuda', torch.cuda.is_available(), '| bench_models imports')
" 2>&1 | tee "$OUT/imports.txt"; then
  echo "bench_models does not import here; see $OUT/imports.txt" >&2
  exit 1
fi

status=0
for network in resnet50 vit_b_16; do
  echo "== bench_models $network (limit ${NETWORK_SECONDS} s)"
  timeout --signal=INT --kill-after=20 "$NETWORK_SECONDS" \
    "$PYTHON" experiments/bench_models.py --networks="$network" --recipe=auto "${BENCH_ARGS[@]}" --out="$OUT/$network" \
    >"$OUT/$network.log" 2>&1
  code=$?
  tail -n 8 "$OUT/$network.log"
  if [ "$code" -ne 0 ]; then
    echo "bench_models $network exited with $code (124: over its time limit)" >&2
    if [ -f "$OUT/$network/results.json" ]; then
      echo "its repetitions timed before the stop ($OUT/$network/results.json):"
      "$PYTHON" -c "
import json, sys
for row in json.load(open(sys.argv[1]))['rows']:
    print(row['network'], row['mode'], 'reps', row['reps'], 'jaxvision img/s', round(row['jaxvision_images_per_s']['median'], 1),
          'torch img/s', round(row['torch_images_per_s']['median'], 1), 'ratio', round(row['ratio'], 3))
" "$OUT/$network/results.json"
    fi
    status=1
  fi
done
exit "$status"
