#!/usr/bin/env bash
# GPU checks for a machine with an NVIDIA GPU, using binaries built elsewhere by
# scripts/build-cuda.sh (copy target/cuda/release/{troupe,gpu_test,examples/gpu_check}).
# Prints one table at the end; every step has its own time limit, so a failing step
# costs its limit at most and the table says which one failed.
#
#   scripts/gpu-check.sh [BIN_DIR] [MODEL.gguf]
#
# BIN_DIR holds `troupe`, `gpu_test` and `gpu_check` (default target/cuda/release);
# MODEL defaults to models/SmolLM2-135M-Instruct.Q4_1.gguf. Without the file the learner
# figures use SmolLM2-135M's shape with fresh weights (`--shape smollm2-135m`): the same
# matmuls, memory and bytes to move, so the same timings.
# LOG_DIR (default a temporary directory) keeps each step's output.
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="${1:-$root/target/cuda/release}"
model="${2:-$root/models/SmolLM2-135M-Instruct.Q4_1.gguf}"
gpu_test="$bin/gpu_test"
[[ -x "$gpu_test" ]] || gpu_test="$(ls "$bin"/deps/gpu-* 2>/dev/null | grep -v '\.d$' | head -n 1)"
gpu_check="$bin/gpu_check"
[[ -x "$gpu_check" ]] || gpu_check="$bin/examples/gpu_check"
. "$root/kernels/gpu-env.sh"
log="${LOG_DIR:-$(mktemp -d)}"
mkdir -p "$log"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$log/gpu.txt"

echo "== kernels vs CPU references"
timeout 180 "$gpu_test" --nocapture --test-threads=1 >"$log/kernels.txt" 2>&1
echo "rc $?" >>"$log/kernels.txt"
tail -n 4 "$log/kernels.txt"

echo "== kernel timings, NCCL broadcast and device copy of 134.5M f32 weights"
timeout 120 "$gpu_check" 2>&1 | tee "$log/gpu_check.txt"

model_args=(--shape smollm2-135m)
[[ -f "$model" ]] && model_args=(--model "$model")
for mode in f32 tf32; do
  echo "== learner step, same-GPU weight sync and sampler on the GPU ($mode)"
  extra=(--peak-tflops 67)
  [[ $mode == tf32 ]] && extra=(--tf32 --peak-tflops 495)
  timeout 240 "$bin/troupe" bench learner --device cuda "${model_args[@]}" "${extra[@]}" \
    --batch 8 --seq 512 --steps 5 --sampler-batch 32 --decode-tokens 64 --json \
    >"$log/learner-$mode.json" 2>"$log/learner-$mode.err"
  echo "rc $?" >>"$log/learner-$mode.err"
  cat "$log/learner-$mode.json"
  tail -n 3 "$log/learner-$mode.err"
done

echo "== short end-to-end run (default config, 100 RL steps, learner and samplers on the GPU)"
sed -e 's/^runs_dir = .*/&\nlearner_device = "cuda"\nsampler_device = "cuda"/' \
  -e 's/^steps = 300/steps = 100/' "$root/cluster.toml" >"$log/gpu.toml"
(cd "$log" && timeout 300 "$bin/troupe" run --config "$log/gpu.toml" --json >"$log/run.json" 2>"$log/run.err")
echo "rc $?" >>"$log/run.err"
tail -n 5 "$log/run.err"

python3 - "$log" <<'PY'
import json, sys
log = sys.argv[1]
rows = [("GPU", open(f"{log}/gpu.txt").read().strip())]
k = open(f"{log}/kernels.txt").read()
rows.append(("kernel tests vs CPU", next((l for l in k.splitlines() if l.startswith("test result")), "no result") + ("" if k.rstrip().endswith("rc 0") else "  FAILED")))
for line in open(f"{log}/gpu_check.txt"):
    if line.startswith(("token_logprob", "pg_loss", "nccl", "device-to-device", "sample T")):
        rows.append((line[:35].strip(), " ".join(line[35:].split())))
for mode in ("f32", "tf32"):
    try:
        l = json.load(open(f"{log}/learner-{mode}.json"))
        rows += [
            (f"learner {mode} tokens/s", f"{l['learner_tokens_per_s']:.0f} (step {l['learner_step_seconds_median']:.3f} s at {l['learner_batch'][0]} x {l['learner_batch'][1]}, {l['parameters'] / 1e6:.1f} M params)"),
            (f"learner {mode} MFU", f"{100 * l['learner_mfu']:.1f}% of {l['peak_tflops']} TFLOP/s"),
            (f"sampler {mode} tokens/s", f"{l['sampler_tokens_per_s']:.0f} ({l['sampler_batch']} rows, f32 weights)"),
            (f"weight sync {mode}, same GPU", f"{1e3 * l['same_device_weight_sync_seconds']:.2f} ms (publish {1e3 * l['same_device_publish_seconds']:.2f} + load {1e3 * l['sampler_load_seconds']:.2f}) for {l['snapshot_bytes'] / 1e6:.0f} MB"),
            (f"weights to host {mode}", f"{1e3 * l['snapshot_to_host_seconds']:.1f} ms"),
            (f"GPU vs CPU log-prob {mode}", f"{l['device_vs_cpu_logprob_max_abs']:.2e} max abs"),
        ]
    except Exception as e:
        rows.append((f"learner bench {mode}", f"FAIL: {e}"))
try:
    s = json.load(open(f"{log}/run.json"))
    h = s["heldout"]
    rows.append(("end-to-end run", f"held-out after SFT {h['after_sft']:.3f} -> after RL {h['after_rl']:.3f}, {s['wall_seconds']:.0f} s wall"))
except Exception as e:
    rows.append(("end-to-end run", f"FAIL: {e}"))
w = max(len(r[0]) for r in rows)
print()
for k, v in rows:
    print(f"{k:<{w}}  {v}")
PY
