# narrowtune on an NVIDIA GPU host: CUDA 12 + cuDNN 9 runtime, Node 20, onnxruntime-node's CUDA provider.
# Build: docker build -t narrowtune .
#
# The default command is a server fit for a network: TLS with the certificate and key mounted at /certs
# (tls.crt, tls.key: PEM, readable by uid 10001; the names of a Kubernetes TLS secret) and API keys
# (--auth api-key). Without certificates it refuses to start rather than serve plaintext. The first key:
#   docker run --rm -v narrowtune-data:/data narrowtune keys create --data-dir /data --tenant ops --role admin
# Run:
#   docker run --gpus all -p 50051:50051 -v narrowtune-data:/data -v "$PWD/certs:/certs:ro" narrowtune
# Mutual TLS (clients need a certificate signed by /certs/ca.crt): append the flags to the command, e.g.
#   docker run … narrowtune serve --host 0.0.0.0 … --tls-client-ca /certs/ca.crt
# and give the health check a client certificate (docker run --health-cmd …) or turn it off (--no-healthcheck).
# Behind a mesh whose sidecar terminates TLS: serve --host 0.0.0.0 … --allow-insecure (plaintext to the sidecar).
ARG NODE_IMAGE=node:20-bookworm-slim

# Node and npm come from the official Node image, not from a setup script.
FROM ${NODE_IMAGE} AS node

FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04
COPY --from=node /usr/local/bin/node /usr/local/bin/node
COPY --from=node /usr/local/lib/node_modules/npm /usr/local/lib/node_modules/npm
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \
 && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx \
 && apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates python3 make g++ libvulkan1 \
 && rm -rf /var/lib/apt/lists/*

# The WebGPU provider (--device webgpu) talks to the GPU through Vulkan: the NVIDIA container runtime mounts
# the driver's Vulkan ICD only when the graphics capability is asked for.
ENV NVIDIA_DRIVER_CAPABILITIES=compute,utility,graphics

WORKDIR /app
COPY package.json package-lock.json tsconfig.json tsconfig.build.json ./
COPY bin ./bin
COPY proto ./proto
COPY src ./src
# prepare (npm ci) bundles the dashboard from here into dist/dashboard.
COPY dashboard ./dashboard
# onnxruntime-node's installer fetches the CUDA execution provider, which is not in the npm package (needs
# network); it runs once, explicitly, whatever npm the image has (some honour package.json's allowScripts, some not).
RUN ONNXRUNTIME_NODE_INSTALL=skip npm ci --no-audit --no-fund \
 && ONNXRUNTIME_NODE_INSTALL=cuda12 node node_modules/onnxruntime-node/script/install.js \
 && npm prune --omit=dev \
 && rm -rf dashboard

RUN useradd --create-home --uid 10001 narrowtune \
 && mkdir -p /data && chown narrowtune /data
USER narrowtune
VOLUME ["/data"]
EXPOSE 50051

# Health needs no key; inside the container the probe encrypts but need not verify the server's name.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s \
  CMD ["node", "/app/bin/narrowtune.js", "health", "--target", "127.0.0.1:50051", "--tls-no-verify"]
ENTRYPOINT ["node", "/app/bin/narrowtune.js"]
CMD ["serve", "--host", "0.0.0.0", "--port", "50051", "--data-dir", "/data", "--model-root", "/data", "--data-root", "/data", "--max-concurrent-jobs", "1", \
     "--auth", "api-key", "--tls-cert", "/certs/tls.crt", "--tls-key", "/certs/tls.key"]
