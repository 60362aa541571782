#!/usr/bin/env bash
# GPU checks for a machine with an NVIDIA GPU, using binaries built elsewhere by
# scripts/build-cuda.sh (copy target/cuda/release/{troupe,examples/gpu_check} and the
# kernels' GPU test binary). Prints one table at the end.
#
#   scripts/gpu-check.sh [BIN_DIR] [MODEL.gguf]
#
# BIN_DIR holds `troupe`, `gpu_check` and `gpu_test` (default target/cuda/release with
# the test binary found under deps/); MODEL defaults to models/SmolLM2-135M-Instruct.Q4_1.gguf
# (without it the learner figures use the built-in small policy).
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="${1:-$root/target/cuda/release}"
model="${2:-$root/models/SmolLM2-135M-Instruct.Q4_1.gguf}"
gpu_test="$bin/gpu_test"
[[ -x "$gpu_test" ]] || gpu_test="$(ls "$bin"/deps/gpu-* 2>/dev/null | grep -v '\.d$' | head -n 1)"
gpu_check="$bin/gpu_check"
[[ -x "$gpu_check" ]] || gpu_check="$bin/examples/gpu_check"
. "$root/kernels/gpu-env.sh"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
log="$(mktemp -d)"

echo "== kernels vs CPU references"
"$gpu_test" --nocapture --test-threads=1 >"$log/kernels.txt" 2>&1
kernels_rc=$?
tail -n 3 "$log/kernels.txt"
echo "== kernel timings, NCCL broadcast and device copy of the 135M-parameter weights"
"$gpu_check" | tee "$log/gpu_check.txt"

model_args=()
[[ -f "$model" ]] && model_args=(--model "$model")
echo "== learner step and sampler on the GPU"
"$bin/troupe" bench learner --device cuda "${model_args[@]}" --batch 8 --seq 256 --steps 5 \
  --sampler-batch 32 --decode-tokens 64 --json | tee "$log/learner.json"
echo "== short end-to-end run (default config, learner on the GPU, samplers on the CPU)"
sed 's/^runs_dir = .*/&\nlearner_device = "cuda"/' "$root/cluster.toml" >"$log/gpu.toml"
(cd "$log" && timeout 600 "$bin/troupe" run --config "$log/gpu.toml" --json >"$log/run.json" 2>"$log/run.err")
run_rc=$?

python3 - "$log" "$kernels_rc" "$run_rc" <<'PY'
import json, sys
log, kernels_rc, run_rc = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rows = []
rows.append(("kernel tests vs CPU", "pass" if kernels_rc == 0 else f"FAIL ({kernels_rc})"))
for line in open(f"{log}/gpu_check.txt"):
    if line.startswith(("token_logprob", "pg_loss", "nccl", "device-to-device", "sample")):
        rows.append((line[:35].strip(), line[35:].strip()))
try:
    l = json.load(open(f"{log}/learner.json"))
    rows += [
        ("learner tokens/s", f"{l['learner_tokens_per_s']:.0f} (step {l['learner_step_seconds_median']:.3f} s)"),
        ("learner MFU", f"{100 * l['learner_mfu']:.1f}% of {l['peak_tflops']} TFLOP/s"),
        ("sampler tokens/s", f"{l['sampler_tokens_per_s']:.0f} ({l['sampler_batch']} rows)"),
        ("weights device->host", f"{1e3 * l['snapshot_to_host_seconds']:.1f} ms for {l['snapshot_bytes'] / 1e6:.0f} MB"),
    ]
except Exception as e:
    rows.append(("learner bench", f"FAIL: {e}"))
try:
    s = json.load(open(f"{log}/run.json"))
    h = s["heldout"]
    rows.append(("end-to-end run", f"after SFT {h['after_sft']:.3f} -> after RL {h['after_rl']:.3f}, {s['wall_seconds']:.0f} s"))
except Exception as e:
    rows.append(("end-to-end run", f"FAIL (rc {run_rc}): {e}"))
w = max(len(r[0]) for r in rows)
print()
for k, v in rows:
    print(f"{k:<{w}}  {v}")
PY
