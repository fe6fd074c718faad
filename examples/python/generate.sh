#!/usr/bin/env bash
# Generates narrowtune's Python stubs (messages and gRPC client) into examples/python/gen/, which is not committed.
# Needs protoc and grpc_python_plugin (Debian: apt-get install protobuf-compiler-grpc). The google/protobuf
# well-known types come from protoc's own include path; google/rpc is vendored under proto/.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
proto_root="$(cd "$here/../../proto" && pwd)"
out="$here/gen"

plugin="$(command -v grpc_python_plugin)" || {
  echo "generate.sh: grpc_python_plugin not found (apt-get install protobuf-compiler-grpc)" >&2
  exit 1
}

# Start clean so stubs of a removed proto file cannot linger.
rm -rf "$out"
mkdir -p "$out"
cd "$proto_root"
protoc \
  --plugin=protoc-gen-grpc_python="$plugin" \
  -I . \
  --python_out="$out" \
  --grpc_python_out="$out" \
  narrowtune/v1/tuning_service.proto \
  google/rpc/status.proto \
  google/rpc/error_details.proto
