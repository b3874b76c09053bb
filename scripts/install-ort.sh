#!/usr/bin/env bash
# Installs the ONNX Runtime shared library (CPU build, ORT 1.29.0) from the npm registry into
# .cache/onnxruntime/lib, verifying the tarball's npm integrity first. Idempotent.
# Optional: ORT_GPU=1 also fetches the CUDA execution provider (230 MB) into the same folder.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dest="$root/.cache/onnxruntime/lib"
dl="$root/.cache/npm"
mkdir -p "$dest" "$dl"

fetch() { # fetch NAME VERSION INTEGRITY MEMBER...
  local name=$1 version=$2 integrity=$3; shift 3
  local tgz="$dl/$name-$version.tgz"
  if [ ! -f "$tgz" ]; then
    (cd "$dl" && npm pack --silent "$name@$version" >/dev/null)
  fi
  local got="sha512-$(openssl dgst -sha512 -binary "$tgz" | base64 -w0)"
  if [ "$got" != "$integrity" ]; then
    echo "install-ort: integrity mismatch for $name@$version: got $got, want $integrity" >&2
    rm -f "$tgz"; exit 1
  fi
  for member in "$@"; do
    tar --no-same-owner -xzf "$tgz" -C "$dest" --strip-components=4 "package/Plugins/Linux/x64/$member"
  done
}

if [ ! -f "$dest/libonnxruntime.so" ]; then
  fetch com.github.asus4.onnxruntime 0.4.9 \
    'sha512-BkzxduSZ9IkeDP6Q8lz2TFU2ie7hSSvS7ZIfzMooExoq0CNzJnuuGaUJ7IsojBgqO4ouD1jXah8OYyJbCN29Fg==' \
    libonnxruntime.so libonnxruntime_providers_shared.so
fi
if [ "${ORT_GPU:-0}" = 1 ] && [ ! -f "$dest/libonnxruntime_providers_cuda.so" ]; then
  fetch com.github.asus4.onnxruntime.linux-x64-gpu 0.4.9 \
    'sha512-FopIhNE/Ng+v2X65wVc9clPCBCvhvA53Hxo2U0Kf5fGdVsC7iCA+mZ0KLWggcQAj7TIZ6pNidR4AC10g74Xo6w==' \
    libonnxruntime_providers_cuda.so
fi
echo "$dest/libonnxruntime.so"
