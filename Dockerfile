# narrowtune on an NVIDIA GPU host: CUDA 12 + cuDNN 9 runtime, Node 20, onnxruntime-node's CUDA provider.
# Build: docker build -t narrowtune .   Run: docker run --gpus all -p 50051:50051 -v narrowtune-data:/data narrowtune
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

ARG NODE_MAJOR=20
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl gnupg python3 make g++ libvulkan1 \
 && curl -fsSL https://deb.nodesource.com/setup_${NODE_MAJOR}.x | bash - \
 && apt-get install -y --no-install-recommends nodejs \
 && rm -rf /var/lib/apt/lists/*

# The WebGPU provider (--device webgpu) talks to the GPU through Vulkan: the NVIDIA container runtime mounts
# the driver's Vulkan ICD only when the graphics capability is asked for.
ENV NVIDIA_DRIVER_CAPABILITIES=compute,utility,graphics

WORKDIR /app
COPY package.json package-lock.json .npmrc tsconfig.json tsconfig.build.json ./
COPY bin ./bin
COPY proto ./proto
COPY src ./src
# The CUDA execution provider is not in the npm package; its postinstall fetches it (needs network here).
RUN ONNXRUNTIME_NODE_INSTALL=cuda12 npm ci --no-audit --no-fund --onnxruntime-node-install=cuda12 \
 && npm prune --omit=dev

RUN useradd --create-home --uid 10001 narrowtune \
 && mkdir -p /data && chown narrowtune /data
USER narrowtune
VOLUME ["/data"]
EXPOSE 50051

HEALTHCHECK --interval=30s --timeout=5s --start-period=20s \
  CMD ["node", "/app/bin/narrowtune.js", "health", "--target", "127.0.0.1:50051"]
ENTRYPOINT ["node", "/app/bin/narrowtune.js"]
CMD ["serve", "--host", "0.0.0.0", "--port", "50051", "--data-dir", "/data", "--model-root", "/data", "--data-root", "/data", "--max-concurrent-jobs", "1"]
