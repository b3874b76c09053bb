#!/usr/bin/env bash
# Makes the Dockerfile's two base images locally, for machines that cannot pull public images
# but reach Debian's archive and the Go module proxy (see docs/environment notes):
#   localhost/debian:bookworm-slim   Debian 12 minbase from debootstrap, slimmed like the public
#                                    image (no docs, man pages or locales; copyright files kept)
#   localhost/golang:1.26-bookworm   that, plus what the build stage needs (gcc, libc6-dev, git,
#                                    make, pkg-config, npm, openssl, ca-certificates), the Go
#                                    toolchain from the module proxy in /usr/local/go, and this
#                                    machine's CA bundle (HTTPS verifies only with it here)
# The runtime base gets no CA bundle: the image itself makes no HTTPS calls, and this machine's
# certificates do not belong in an image users run.
# Each image is made once: skipped when `podman image exists` finds it (REBUILD=1 remakes both).
# Needs root, debootstrap and podman (apt-get install debootstrap podman). Settings:
#   DEBIAN_MIRROR           default: the first .../debian URI of this machine's apt sources
#   DEBIAN_SECURITY_MIRROR  default: DEBIAN_MIRROR with -security appended
#   GO_TOOLCHAIN            default: 1.26.8 (golang.org/toolchain@v0.0.1-go$GO_TOOLCHAIN.linux-amd64)
#   CA_BUNDLE               default: /etc/ssl/certs/ca-certificates.crt
#   RUNTIME_BASE, GO_BASE   the names above
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work="$root/.cache/image/base"
RUNTIME_BASE=${RUNTIME_BASE:-localhost/debian:bookworm-slim}
GO_BASE=${GO_BASE:-localhost/golang:1.26-bookworm}
GO_TOOLCHAIN=${GO_TOOLCHAIN:-1.26.8}
CA_BUNDLE=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
SUITE=bookworm

say() { printf 'base-images: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (debootstrap and podman build --isolation chroot)"
for tool in podman debootstrap go; do
  command -v "$tool" >/dev/null || die "$tool not found (apt-get install debootstrap podman; Go 1.26 for the toolchain download)"
done

if [ -z "${DEBIAN_MIRROR:-}" ]; then
  DEBIAN_MIRROR=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
    grep -E '^[[:space:]]*(deb[[:space:]]|URIs:)' | grep -oE 'https?://[^[:space:]]+/debian/?([[:space:]]|$)' |
    head -n1 | tr -d '[:space:]' || true)
  DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
fi
DEBIAN_MIRROR=${DEBIAN_MIRROR%/}
DEBIAN_SECURITY_MIRROR=${DEBIAN_SECURITY_MIRROR:-$DEBIAN_MIRROR-security}

if [ "${REBUILD:-0}" = 1 ]; then
  podman rmi -f "$GO_BASE" "$RUNTIME_BASE" >/dev/null 2>&1 || true
fi

# --- localhost/debian:bookworm-slim -------------------------------------------------------------
if podman image exists "$RUNTIME_BASE"; then
  say "$RUNTIME_BASE exists: kept"
else
  say "making $RUNTIME_BASE: debootstrap --variant=minbase $SUITE from $DEBIAN_MIRROR"
  rootfs="$work/rootfs"
  rm -rf "$rootfs" && mkdir -p "$rootfs"
  trap 'rm -rf "$rootfs"' EXIT
  debootstrap --variant=minbase "$SUITE" "$rootfs" "$DEBIAN_MIRROR" >"$work/debootstrap.log" 2>&1 ||
    { tail -n 30 "$work/debootstrap.log" >&2; die "debootstrap failed (log: $work/debootstrap.log)"; }
  # Slim like the public image: dpkg leaves documentation out from now on; remove what is there.
  cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
EOF
  find "$rootfs/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
  find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "$rootfs"/usr/share/{man,groff,info,lintian,linda,locale}/*
  # apt: bookworm, its updates and security, as the public image has them; no recommends.
  rm -f "$rootfs/etc/apt/sources.list"
  cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $DEBIAN_MIRROR
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $DEBIAN_SECURITY_MIRROR
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' >"$rootfs/etc/apt/apt.conf.d/docker-no-recommends"
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/lib/apt/lists/* \
    "$rootfs"/var/log/* "$rootfs"/tmp/* "$rootfs"/root/.bash_history
  : >"$rootfs/etc/hostname"
  : >"$rootfs/etc/resolv.conf"
  tar --numeric-owner --xattrs -C "$rootfs" -c . |
    podman import --change 'CMD ["bash"]' \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' - "$RUNTIME_BASE" >"$work/import.log" 2>&1 ||
    die "podman import failed (log: $work/import.log)"
  rm -rf "$rootfs"
  trap - EXIT
  say "made $RUNTIME_BASE ($(podman image inspect --format '{{.Size}}' "$RUNTIME_BASE" | numfmt --to=iec))"
fi

# --- localhost/golang:1.26-bookworm -------------------------------------------------------------
if podman image exists "$GO_BASE"; then
  say "$GO_BASE exists: kept"
else
  module="golang.org/toolchain@v0.0.1-go$GO_TOOLCHAIN.linux-amd64"
  say "making $GO_BASE: $RUNTIME_BASE + build packages + Go $GO_TOOLCHAIN ($module from the module proxy)"
  dir=$(cd /tmp && go mod download -json "$module" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  if [ -z "$dir" ] || [ ! -d "$dir/bin" ]; then die "go mod download $module gave no folder"; fi
  ctx="$work/golang-context"
  rm -rf "$ctx" && mkdir -p "$ctx"
  trap 'rm -rf "$ctx"' EXIT
  # The module cache keeps files read-only and not executable: copy, then mark the tools.
  cp -r "$dir" "$ctx/go"
  chmod -R u+w,a+rX "$ctx/go"
  chmod a+x "$ctx/go/bin/"* "$ctx/go/pkg/tool/linux_amd64/"*
  cp "$CA_BUNDLE" "$ctx/ca-certificates.crt"
  cat >"$ctx/Containerfile" <<EOF
FROM $RUNTIME_BASE
RUN apt-get update -qq \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ca-certificates gcc libc6-dev make pkg-config git npm openssl >/dev/null \\
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin
# This machine's CA bundle (HTTPS is verified with it here); also as a local certificate, so that
# an update-ca-certificates run by a later package install keeps it in the bundle.
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY ca-certificates.crt /usr/local/share/ca-certificates/build-host-bundle.crt
COPY go /usr/local/go
ENV GOLANG_VERSION=$GO_TOOLCHAIN GOTOOLCHAIN=local GOPATH=/go \\
    PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt
RUN mkdir -p /go/bin /go/src && chmod -R 1777 /go && go version
WORKDIR /go
EOF
  podman build --isolation chroot --pull=never --format docker -t "$GO_BASE" "$ctx" >"$work/golang-build.log" 2>&1 ||
    { tail -n 30 "$work/golang-build.log" >&2; die "podman build of $GO_BASE failed (log: $work/golang-build.log)"; }
  rm -rf "$ctx"
  trap - EXIT
  say "made $GO_BASE ($(podman image inspect --format '{{.Size}}' "$GO_BASE" | numfmt --to=iec))"
fi
