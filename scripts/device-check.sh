#!/usr/bin/env bash
# The device check (issue 10): on a machine with a real GPU, one command that installs, prints the
# WebGPU adapter, runs the fixture parity suite on webgpu and the scale bench on the GPU, and
# writes the results as JSON under $OUT (default bench/results/device-check). Nothing else in the
# project needs a GPU; CI runs the same parity suite on SwiftShader.
#
#   bash scripts/device-check.sh            # everything (the scale bench makes ~14 GB of checkpoints)
#   SKIP_SCALE=1 bash scripts/device-check.sh
#
# The Vulkan driver used is the vendor's (the first ICD in /usr/share/vulkan/icd.d or
# /etc/vulkan/icd.d that is neither lavapipe nor SwiftShader), unless VK_ICD_FILENAMES is set.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT="${OUT:-bench/results/device-check}"
mkdir -p "$OUT"
export ELECTRON_SKIP_BINARY_DOWNLOAD=1
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"

if [ -z "${VK_ICD_FILENAMES:-}" ] && [ -z "${VK_DRIVER_FILES:-}" ]; then
  for f in /usr/share/vulkan/icd.d/*.json /etc/vulkan/icd.d/*.json; do
    [ -e "$f" ] || continue
    case "$f" in *lvp* | *swiftshader*) continue ;; esac
    export VK_ICD_FILENAMES="$f"
    break
  done
fi
echo "device-check: Vulkan driver ${VK_ICD_FILENAMES:-${VK_DRIVER_FILES:-(none found: install the Vulkan driver of the GPU vendor and libvulkan1)}}"

[ -d node_modules ] || npm install --no-audit --no-fund
npm run build

# 1. The adapter, as the workbench reports it (vendor, architecture, description, limits).
node bin/moe-workbench.js info --model resources/default-model --backend webgpu --json | tail -n 1 > "$OUT/info.json"
node -e "const i = require(process.argv[1]); console.log('device-check: backend', i.backend, 'adapter', JSON.stringify(i.adapter))" "$PWD/$OUT/info.json"

# 2. The parity suite on webgpu: every family, F32 and BF16, routing, losses, gradients, AdamW,
#    greedy tokens; and a LoRA run with interrupt, resume and export.
MOE_WORKBENCH_REQUIRE_WEBGPU=1 npx vitest run test/main/engine/parity.test.ts test/main/train/webgpu.test.ts \
  --reporter=default --reporter=json --outputFile="$OUT/parity.json"

# 3. The scale bench at real size on the GPU (and wasm beside it, for the ratio).
if [ -z "${SKIP_SCALE:-}" ]; then
  SCALE_BACKENDS="${SCALE_BACKENDS:-webgpu,wasm}" npm run bench:scale
  cp bench/results/scale.json "$OUT/scale.json"
fi
echo "device-check: results in $OUT"
