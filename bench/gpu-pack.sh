#!/usr/bin/env bash
# Packs what bench/gpu.sh needs on a GPU host that has neither Node nor network into one folder (default .gpu/,
# git-ignored): the packing machine's Node binary, the benchmark bundled into one file by esbuild (the same
# src/bench/ and trainer as `npm run bench`), onnxruntime-node with only its linux-x64 binaries,
# and the Vulkan loader's Debian packages. Compressed with xz it is about 40 MB, small enough to copy along with
# the checkout. The CUDA provider goes in only if node_modules has it (see bench/gpu.sh's cuda section).
#
#   bench/gpu-pack.sh [DIR]            # then, on the GPU host, from the checkout: bash bench/gpu.sh [OUTDIR]
#   NT_GPU_PACK_XZ=0 bench/gpu-pack.sh # uncompressed (tests; nothing travels)
#
# Needs: npm ci done, xz, and `apt-get download` (Debian registry; run `apt-get update` once as root).
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-.gpu}
XZ=${NT_GPU_PACK_XZ:-1}
ARCH=$(node -p 'process.platform + "-" + process.arch')
[ "$ARCH" = linux-x64 ] || { echo "gpu-pack: the pack is for linux-x64 GPU hosts; this is $ARCH" >&2; exit 1; }
# Dawn (WebGPU) loads libvulkan.so.1; NVIDIA's Vulkan ICD needs glvnd's GLX dispatch and Xlib beside it;
# vulkaninfo (vulkan-tools) says in facts.txt which device and driver the loader found.
DEBS=(libvulkan1 libglvnd0 libglx0 libx11-6 libx11-data libxcb1 libxau6 libxdmcp6 libbsd0 libmd0 libxext6
  vulkan-tools libwayland-client0 libffi8)

rm -rf "$DIR"
mkdir -p "$DIR/app/node_modules" "$DIR/debs"

# onnxruntime-node stays external because it is native, and so does sharp (only image data loads it, and the
# benchmark has none); gpu.sh points the bundle at the checkout's
# bench/torch_trainer.py.
npx --no-install esbuild bench/run.ts --bundle --platform=node --format=esm --target=node20 --log-level=warning \
  --external:onnxruntime-node --external:sharp --outfile="$DIR/app/bench.mjs" \
  --banner:js="import { createRequire as __ntRequire } from 'node:module'; const require = __ntRequire(import.meta.url);"

# onnxruntime-node without the other platforms' binaries (288 MB in all).
ORT_BIN="$DIR/app/node_modules/onnxruntime-node/bin/napi-v6"
cp -r node_modules/onnxruntime-common "$DIR/app/node_modules/"
mkdir -p "$ORT_BIN/linux"
cp -r node_modules/onnxruntime-node/{package.json,dist,lib} "$DIR/app/node_modules/onnxruntime-node/"
cp -r node_modules/onnxruntime-node/bin/napi-v6/linux/x64 "$ORT_BIN/linux/"
cp "$(node -p process.execPath)" "$DIR/node"

(cd "$DIR/debs" && apt-get download "${DEBS[@]}" >/dev/null) || {
  echo "gpu-pack: apt-get download ${DEBS[*]} failed (run apt-get update as root first)" >&2
  exit 1
}
# Plain names: Debian's epoch escapes (%3a) are not worth testing against every file transport.
for f in "$DIR"/debs/*.deb; do mv "$f" "$DIR/debs/$(basename "$f" | cut -d_ -f1).deb"; done

if [ "$XZ" = 1 ]; then
  xz -T0 -6 "$DIR/node" "$ORT_BIN/linux/x64/libonnxruntime.so.1"
  [ -f "$ORT_BIN/linux/x64/libonnxruntime_providers_cuda.so" ] && xz -T0 -6 "$ORT_BIN"/linux/x64/libonnxruntime_providers_*.so
fi

{
  echo "packed $(date -u +%FT%TZ) from $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src bench || echo ' (with uncommitted changes)')"
  echo "node $(node --version), onnxruntime-node $(node -p "require('./node_modules/onnxruntime-node/package.json').version")"
  echo "cuda provider: $(ls "$ORT_BIN/linux/x64" | grep -q providers_cuda && echo present || echo 'absent (ONNXRUNTIME_NODE_INSTALL=cuda12 node node_modules/onnxruntime-node/script/install.js fetches it)')"
  (cd "$DIR/debs" && ls)
} >"$DIR/MANIFEST"
echo "gpu-pack: $(du -sh "$DIR" | cut -f1) in $DIR"
cat "$DIR/MANIFEST"
