#!/usr/bin/env bash
# The benchmark's GPU rows, on a GPU host that needs neither Node nor network: everything comes from the folder
# bench/gpu-pack.sh made (default .gpu/, copied along with the checkout). The host: Linux x64, an NVIDIA GPU with
# its driver (including the driver's Vulkan ICD, which the WebGPU provider uses), and a python3 with torch (a
# CUDA build) for the PyTorch comparison rows; without torch those rows are left out. Sections, in this order,
# each the `medium` rows × full, mlp_gate_up, sa_proj through the real trainer:
#   webgpu  onnxruntime's WebGPU execution provider (Dawn on Vulkan; the Vulkan loader is carried as Debian
#           packages and used only where the host lacks it), against PyTorch on the host's GPU when its
#           python3 has torch with CUDA (loss check included: a fast wrong trainer cannot win)
#   webgpu-fused  the same with --kernels fused: attention and cross-entropy as onnxruntime's fused ops,
#           which WebGPU runs on the CPU; measures what the portable lowering (the default there) buys
#   cpu     the same rows on the host's CPUs, against PyTorch on the same CPUs
#   cuda    onnxruntime's CUDA provider, only where the pack holds libonnxruntime_providers_cuda.so
#           (fetch it before packing: ONNXRUNTIME_NODE_INSTALL=cuda12 node node_modules/onnxruntime-node/script/install.js)
#
#   bash bench/gpu.sh [OUTDIR]     # OUTDIR: where the results go, default bench/gpu-out/ (git-ignored)
#
# Env: NT_GPU_BUNDLE (.gpu), NT_GPU_CONFIG (medium), NT_GPU_STEPS (8), NT_GPU_WARMUP (2),
#      NT_GPU_SECTIONS ("webgpu webgpu-fused cpu cuda"), NT_GPU_PYTHON (python3), NT_GPU_DEADLINE (540 s for the whole
#      script: sections that would start later are skipped), NT_GPU_ROW_TIMEOUT (150 s per row process),
#      NT_GPU_CARRIED_LOADER=1 (use every carried library even where the host has its own).
# Writes OUTDIR/gpu.log (everything), OUTDIR/facts.txt, OUTDIR/SECTION.json (bench --json), OUTDIR/summary.txt.
# Exit status: 0 when every section that ran passed; a section that cannot run here is recorded, not failed.
set -uo pipefail
cd "$(dirname "$0")/.."
START=$SECONDS
B=$(cd "${NT_GPU_BUNDLE:-.gpu}" 2>/dev/null && pwd) || { echo "gpu.sh: no pack at ${NT_GPU_BUNDLE:-.gpu}: run bench/gpu-pack.sh first" >&2; exit 2; }
OUTDIR=${1:-bench/gpu-out}
mkdir -p "$OUTDIR" && OUTDIR=$(cd "$OUTDIR" && pwd)
exec > >(tee "$OUTDIR/gpu.log") 2>&1
TEE_PID=$!
CONFIG=${NT_GPU_CONFIG:-medium}
STEPS=${NT_GPU_STEPS:-8}
WARMUP=${NT_GPU_WARMUP:-2}
SECTIONS=${NT_GPU_SECTIONS:-webgpu webgpu-fused cpu cuda}
PY=${NT_GPU_PYTHON:-python3}
DEADLINE=${NT_GPU_DEADLINE:-540}
ROW_TIMEOUT=${NT_GPU_ROW_TIMEOUT:-150}
SUMMARY=$OUTDIR/summary.txt
: >"$SUMMARY"
note() { echo "gpu.sh: $*" | tee -a "$SUMMARY"; }

# ── unpack (xz, or Python's lzma where xz is missing) ──
unpack() {
  local f=$1 to=${1%.xz}
  [ -f "$to" ] && return 0
  if command -v xz >/dev/null; then xz -dkc "$f" >"$to.part"; else "$PY" -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$f" "$to.part"; fi &&
    mv "$to.part" "$to"
}
while IFS= read -r f; do unpack "$f" || { note "cannot unpack $f"; exit 2; }; done < <(find "$B" -name '*.xz')
NODE=$B/node
chmod +x "$NODE"
ORT_LIB=$B/app/node_modules/onnxruntime-node/bin/napi-v6/linux/x64

# ── Vulkan: fill only the gaps in the host's libraries, never shadow them (NT_GPU_CARRIED_LOADER=1: use all) ──
LDCONFIG=$(command -v ldconfig || echo /sbin/ldconfig)
host_has() { "$LDCONFIG" -p 2>/dev/null | grep -q "^[[:space:]]*$1 "; }
SYSROOT=$B/sysroot
LIBDIR=$SYSROOT/usr/lib/x86_64-linux-gnu
rm -rf "$SYSROOT"
for d in "$B"/debs/*.deb; do dpkg-deb -x "$d" "$SYSROOT" || note "cannot unpack $d"; done
if [ "${NT_GPU_CARRIED_LOADER:-0}" != 1 ]; then
  for l in "$LIBDIR"/*.so.*; do
    [ -e "$l" ] && host_has "$(basename "$l")" && rm -f "$l"
  done
fi
for d in /usr/local/nvidia/lib64 /usr/local/nvidia/lib "$LIBDIR"; do
  [ -d "$d" ] && LD_LIBRARY_PATH=$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
done
export LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}
if [ -z "${VK_DRIVER_FILES:-}${VK_ICD_FILENAMES:-}" ] && ! ls /usr/share/vulkan/icd.d/*nvidia* /etc/vulkan/icd.d/*nvidia* >/dev/null 2>&1; then
  for j in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/local/nvidia/etc/vulkan/icd.d/nvidia_icd.json; do
    if [ -f "$j" ]; then export VK_DRIVER_FILES=$j VK_ICD_FILENAMES=$j; break; fi
  done
fi
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp} # Dawn warns on every adapter query without one
export NARROWTUNE_BENCH_TORCH_TRAINER=$PWD/bench/torch_trainer.py # wherever the pack lives

# ── what this host is ──
LOADER=host
[ -e "$LIBDIR/libvulkan.so.1" ] && LOADER=carried
CARRIED=$(find "$LIBDIR" -name '*.so.[0-9]' -printf '%f ' 2>/dev/null)
TORCH_DEV=$("$PY" -c 'import torch; print("cuda" if torch.cuda.is_available() else "cpu")' 2>/dev/null || true)
{
  echo "date: $(date -u +%FT%TZ)"
  echo "host: $(uname -srm), $(nproc) CPUs"
  echo "gpu: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo 'none (no nvidia-smi)')"
  echo "node: $("$NODE" --version)"
  echo "torch: $("$PY" -c 'import torch; print(torch.__version__)' 2>/dev/null || echo "none in $PY"), baseline device ${TORCH_DEV:-none}"
  echo "vulkan loader: $LOADER; carried libraries in use: ${CARRIED:-none}"
  echo "vulkan ICD: ${VK_DRIVER_FILES:-${VK_ICD_FILENAMES:-default search paths}}"
  echo "vulkaninfo: $(timeout 30 "$SYSROOT/usr/bin/vulkaninfo" --summary 2>&1 | grep -E 'deviceName|deviceType|driverName|driverInfo|apiVersion' | tr -s ' \t\n' ' ' || true)"
  echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
  sed 's/^/pack: /' "$B/MANIFEST"
} | tee "$OUTDIR/facts.txt"

# ── sections ──
FAILED=0
section() { # NAME DEVICE TORCH_DEVICE|- [BENCH ARGS]: runs the bench rows, bounded by what is left of the deadline
  local name=$1 dev=$2 tdev=$3 left=$((DEADLINE - (SECONDS - START)))
  shift 3
  if [ "$left" -lt 30 ]; then note "$name: skipped (deadline ${DEADLINE} s reached)"; return; fi
  local torch=()
  [ "$tdev" != - ] && torch=(--vs-torch --torch-device "$tdev" --python "$PY")
  local t0=$SECONDS
  timeout -k 5 "$left" "$NODE" "$B/app/bench.mjs" --config "$CONFIG" --device "$dev" --steps "$STEPS" --warmup "$WARMUP" \
    --row-timeout "$ROW_TIMEOUT" --json "$OUTDIR/$name.json" "${torch[@]}" "$@"
  local rc=$?
  [ "$rc" -ne 0 ] && FAILED=1
  note "$name: exit $rc after $((SECONDS - t0)) s$([ "$rc" -eq 124 ] && echo ' (deadline)')"
}
for s in $SECTIONS; do
  case $s in
    webgpu) section webgpu webgpu "${TORCH_DEV:--}" ;;
    webgpu-fused) section webgpu-fused webgpu - --kernels fused ;;
    cpu) section cpu cpu "$([ -n "$TORCH_DEV" ] && echo cpu || echo -)" ;;
    cuda)
      if ls "$ORT_LIB"/libonnxruntime_providers_cuda.so >/dev/null 2>&1; then section cuda cuda "${TORCH_DEV:--}"
      else note "cuda: not run: the pack has no libonnxruntime_providers_cuda.so (onnxruntime-node's installer fetches it, which needs network)"; fi ;;
    *) note "unknown section $s (webgpu, webgpu-fused, cpu, cuda)"; FAILED=1 ;;
  esac
done
note "done in $((SECONDS - START)) s"
exec >&- 2>&-
wait "$TEE_PID" 2>/dev/null # the log is complete before the caller collects it
exit $FAILED
