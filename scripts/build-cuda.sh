#!/usr/bin/env bash
# Build troupe with `--features cuda` on a machine with no GPU and no CUDA install, so the
# binary can be copied to a GPU machine.
#
#   scripts/build-cuda.sh            -> target/cuda/release/troupe (+ kernels' gpu_check)
#
# nvcc 13.0 and the CUDA libraries come from NVIDIA's PyPI wheels (into
# target/cuda-toolkit, ~1 GB); libcuda (the driver) has no wheel, so a stub with the
# driver API's symbols is generated for linking only. CUDA_COMPUTE_CAP picks the GPU
# generation candle's kernels are compiled for (default 90: H100/H200).
#
# On the GPU machine the binary needs libcuda.so.1 (the driver) and the CUDA 13 libraries
# libcublas.so.13, libcublasLt.so.13, libcurand.so.10, libnvrtc.so.13 and libnccl.so.2 on
# LD_LIBRARY_PATH: PyTorch's cu130 wheels ship them; `. kernels/gpu-env.sh` finds them.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
tool="${TROUPE_CUDA_TOOLKIT:-$root/target/cuda-toolkit}"
py="$tool/py"
cuda="$py/nvidia/cu13"
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"

if [[ ! -x "$cuda/bin/nvcc" ]]; then
  echo "build-cuda: installing nvcc 13.0 and CUDA 13 libraries from PyPI into $py"
  python3 -m pip install --quiet --no-deps --target "$py" \
    "nvidia-cuda-nvcc==13.0.*" "nvidia-cuda-runtime==13.0.*" "nvidia-nvvm==13.0.*" \
    "nvidia-cuda-crt==13.0.*" "nvidia-cuda-cccl==13.0.*" "nvidia-cublas==13.0.*" \
    "nvidia-curand" "nvidia-cuda-nvrtc==13.0.*" "nvidia-nccl-cu13"
fi

# Link-time libraries: unversioned names for the wheels' libraries, and a driver stub.
stubs="$tool/stubs"
mkdir -p "$stubs"
for lib in cublas.so.13 cublasLt.so.13 curand.so.10 nvrtc.so.13 cudart.so.13; do
  ln -sf "$cuda/lib/lib$lib" "$stubs/lib${lib%%.so*}.so"
done
ln -sf "$(ls "$py"/nvidia/nccl/lib/libnccl.so.* | head -n 1)" "$stubs/libnccl.so"
if [[ ! -s "$stubs/libcuda.so" ]]; then
  sys="$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.19.10/src/driver/sys 2>/dev/null | head -n 1)"
  if [[ -z "$sys" ]]; then
    (cd "$root" && cargo fetch --quiet)
    sys="$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.19.10/src/driver/sys | head -n 1)"
  fi
  grep -oE 'fn cu[A-Za-z0-9_]+\(' "$sys/mod.rs" | sed -E 's/fn (.*)\(/void \1(void) {}/' | sort -u > "$stubs/cuda_stub.c"
  gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$stubs/libcuda.so" "$stubs/cuda_stub.c"
fi

export CUDA_HOME="$cuda" CUDA_PATH="$cuda" PATH="$cuda/bin:$PATH"
export NVCC_PREPEND_FLAGS="${NVCC_PREPEND_FLAGS:-} -I$cuda/include"
export LIBRARY_PATH="$stubs${LIBRARY_PATH:+:$LIBRARY_PATH}"
export LD_LIBRARY_PATH="$cuda/lib:$cuda/nvvm/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export RUSTFLAGS="${RUSTFLAGS:-} -L native=$stubs"
nvcc --version | tail -n 2
cd "$root"
CARGO_TARGET_DIR="$root/target/cuda" cargo build --release --features cuda --bin troupe
CARGO_TARGET_DIR="$root/target/cuda" cargo build --release -p troupe-kernels --features cuda --example gpu_check
# The kernels' GPU-vs-CPU tests, as one binary to copy along.
test_bin="$(CARGO_TARGET_DIR="$root/target/cuda" cargo test --release -p troupe-kernels --features cuda \
  --test gpu --no-run --message-format=json 2>/dev/null \
  | python3 -c 'import json,sys; print([m["executable"] for m in map(json.loads, sys.stdin) if m.get("executable")][-1])')"
cp "$test_bin" "$root/target/cuda/release/gpu_test"
echo "build-cuda: target/cuda/release/{troupe,gpu_test} and examples/gpu_check (compute capability $CUDA_COMPUTE_CAP)"
echo "build-cuda: on the GPU machine: . kernels/gpu-env.sh && target/cuda/release/troupe ..."
