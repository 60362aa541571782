# Source this (`. kernels/gpu-env.sh`) before running the `cuda` build on a machine whose
# CUDA libraries come from PyTorch's pip wheels (site-packages/nvidia/*/lib).
#
# cudarc (feature cuda-13000) dlopens libcuda.so / .so.1 (the driver), libnvrtc.so.13 and
# libnccl.so; the NCCL wheel ships only libnccl.so.2, a name cudarc does not try, so a
# libnccl.so link to it goes in a directory of its own at the front of LD_LIBRARY_PATH.
_troupe_sp=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
_troupe_libs=$(ls -d "$_troupe_sp"/nvidia/*/lib 2>/dev/null | tr '\n' ':')
mkdir -p /tmp/troupe-cuda-libs
_troupe_nccl=$(ls "$_troupe_sp"/nvidia/nccl/lib/libnccl.so* 2>/dev/null | head -n 1)
if [ -n "$_troupe_nccl" ]; then ln -sf "$_troupe_nccl" /tmp/troupe-cuda-libs/libnccl.so; fi
export LD_LIBRARY_PATH="/tmp/troupe-cuda-libs:${_troupe_libs}/usr/local/nvidia/lib64:/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
echo "troupe gpu-env: site-packages $_troupe_sp; nccl ${_troupe_nccl:-not found}"
unset _troupe_sp _troupe_libs _troupe_nccl
