#!/usr/bin/env bash
# Training throughput: tuneloop's trainer against a plain transformers Trainer + PEFT baseline, side by side in one
# process, on the same random-weight model and rows (gpu-worker/src/tuneloop_trainer/bench/ says what each side
# does and how FLOPs and MFU are counted). Prints a table on stderr, writes bench/results/train-<config>.json.
#   npm run bench:train                       # bench/train/cpu-small.json: a 40M-parameter Llama on CPU, ~5 min
#   npm run bench:train -- gpu-llama3-8b      # the GPU figures: Llama-3-8B shape, seq 2048, LoRA bf16 and QLoRA
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
name="${1:-cpu-small}"
config="$root/bench/train/$name.json"
[ -f "$config" ] || { echo "bench:train: no config $config (see bench/train/)" >&2; exit 2; }
mkdir -p "$root/bench/results"
PYTHONPATH="$root/gpu-worker/src" exec "$root/.tools/py/bin/python" -m tuneloop_trainer bench \
  --config "$config" --out "$root/bench/results/train-$name.json"
