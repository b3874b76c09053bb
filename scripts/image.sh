#!/usr/bin/env bash
# `make image`: builds the Dockerfile on this machine with podman (`podman build --isolation
# chroot`: `podman run` does not work here) from base images made locally by
# scripts/base-images.sh, up to and including the smoke stage, and tags the result.
# The whole build log is kept in .cache/image/build.log; the smoke test's answer is printed.
# Settings (environment):
#   IMAGE          tag of the image (default uniter:latest)
#   DOCKERFILE     Dockerfile (default) or Dockerfile.cuda
#   GO_IMAGE       builder base (default: the local localhost/golang:1.26-bookworm)
#   RUNTIME_IMAGE  runtime base (default: the local localhost/debian:bookworm-slim). Dockerfile.cuda
#                  needs a CUDA 13 + cuDNN 9 image, which cannot be made here: give one, or the
#                  Debian base with BUILD_ARGS='--build-arg CHECK_CUDA_LIBS=0' to test the rest
#   NO_CACHE=1     rebuild every layer (the base images stay; REBUILD=1 remakes those too)
#   BUILD_ARGS     more arguments for podman build
# Needs root (debootstrap and podman build --isolation chroot).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
IMAGE=${IMAGE:-uniter:latest}
DOCKERFILE=${DOCKERFILE:-Dockerfile}
log_dir="$root/.cache/image"
log="$log_dir/build.log"
mkdir -p "$log_dir"

say() { printf 'image: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (podman build --isolation chroot, debootstrap)"
if ! command -v podman >/dev/null || ! command -v debootstrap >/dev/null; then
  say "installing Debian's podman and debootstrap"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman debootstrap >/dev/null
fi

if [ "$DOCKERFILE" != Dockerfile ] && [ -z "${RUNTIME_IMAGE:-}" ]; then
  # Dockerfile.cuda's base, NVIDIA's CUDA 13 + cuDNN 9 image, cannot be made from Debian here.
  die "$DOCKERFILE needs RUNTIME_IMAGE: a CUDA 13 + cuDNN 9 image (e.g. a local copy of nvidia/cuda:13.0.2-cudnn-runtime-ubuntu24.04);
  to test the rest of the file on the Debian base: RUNTIME_IMAGE=localhost/debian:bookworm-slim BUILD_ARGS='--build-arg CHECK_CUDA_LIBS=0' IMAGE=uniter:cuda-standin"
fi

start=$(date +%s)
if [ -z "${GO_IMAGE:-}" ] || [ -z "${RUNTIME_IMAGE:-}" ]; then
  bash "$root/scripts/base-images.sh"
fi
GO_IMAGE=${GO_IMAGE:-localhost/golang:1.26-bookworm}
RUNTIME_IMAGE=${RUNTIME_IMAGE:-localhost/debian:bookworm-slim}
bases_done=$(date +%s)

version=$(git describe --tags --always --dirty 2>/dev/null || echo dev)
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
args=(build --isolation chroot --pull=never --format docker --layers
  -f "$DOCKERFILE" -t "$IMAGE"
  --build-arg GO_IMAGE="$GO_IMAGE" --build-arg RUNTIME_IMAGE="$RUNTIME_IMAGE"
  --build-arg VERSION="$version" --build-arg REVISION="$revision")
[ "${NO_CACHE:-0}" = 1 ] && args+=(--no-cache)
# shellcheck disable=SC2206 # BUILD_ARGS is split on purpose
[ -n "${BUILD_ARGS:-}" ] && args+=(${BUILD_ARGS})
args+=("$root")

say "podman ${args[*]}"
say "log: $log"
{
  echo "# $(date -u +%FT%TZ) podman ${args[*]}"
  echo "# $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs), $(nproc) cores; $(podman --version)"
} >"$log"
# Every line of the log gets the seconds since the start, so that slow steps can be found.
stamp() { while IFS= read -r line; do printf '%4d %s\n' $(($(date +%s) - start)) "$line"; done; }
set +e
podman "${args[@]}" 2>&1 | stamp | tee -a "$log" | grep --line-buffered -E '^ *[0-9]+ (\[[0-9]+/[0-9]+\] )?(STEP [0-9]+/[0-9]+: (FROM|RUN|COPY)|COMMIT|smoke: |Error|error)' | cut -c1-160 >&2
status=${PIPESTATUS[0]}
set -e
end=$(date +%s)
if [ "$status" != 0 ]; then
  tail -n 40 "$log" >&2
  die "podman build failed with status $status after $((end - start)) s (whole log: $log)"
fi

size=$(podman image inspect --format '{{.Size}}' "$IMAGE")
summary="image: built $IMAGE ($version) in $((end - start)) s (base images $((bases_done - start)) s, build $((end - bases_done)) s); size $(numfmt --to=iec "$size") ($size bytes)"
echo "# $summary" >>"$log"
echo "$summary" >&2
# The smoke test's answer, read from the image (its stage may have come from the cache).
if mnt=$(podman image mount "$IMAGE" 2>/dev/null) && [ -f "$mnt/app/smoke-test.txt" ]; then
  say "the smoke test's answer (/app/smoke-test.txt in the image):"
  tee -a "$log" <"$mnt/app/smoke-test.txt" >&2
fi
podman image unmount "$IMAGE" >/dev/null 2>&1 || true
