#!/usr/bin/env bash
# Generates narrowtune's Python stubs (messages and gRPC client) into examples/python/gen/, which is not committed.
# Needs protoc and grpc_python_plugin (Debian: apt-get install protobuf-compiler-grpc). The google/protobuf
# well-known types it imports (any, duration, timestamp) are shipped under well-known/ (from protobuf 3.21,
# BSD-3-Clause), because Debian keeps them in libprotobuf-dev, which protobuf-compiler only recommends;
# google/rpc is vendored under proto/.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
proto_root="$(cd "$here/../../proto" && pwd)"
out="$here/gen"

need() {
  [ -x "$(command -v "$1")" ] || {
    echo "generate.sh: $1 not found; on Debian: apt-get install --no-install-recommends protobuf-compiler-grpc" >&2
    exit 1
  }
}
need protoc
need grpc_python_plugin

# Start clean so stubs of a removed proto file cannot linger.
rm -rf "$out"
mkdir -p "$out"
cd "$proto_root"
# well-known/ comes first, so the shipped copies are used even where protoc has its own.
protoc \
  --plugin=protoc-gen-grpc_python="$(command -v grpc_python_plugin)" \
  -I "$here/well-known" \
  -I . \
  --python_out="$out" \
  --grpc_python_out="$out" \
  narrowtune/v1/tuning_service.proto \
  google/rpc/status.proto \
  google/rpc/error_details.proto
