# UNITER service image (CPU): the binary, the ONNX Runtime library (from npm, integrity-checked by
# scripts/install-ort.sh, as `make ort` does), the default bundle and the task bundles, run as a non-root user.
#   docker build -t uniter .                     (the last stage; the smoke stage runs on the way)
#   docker build --target runtime -t uniter .    (without the smoke test)
#   docker run -p 8080:8080 -e UNITER_AUTH_KEYS=me:write:sha256:<hex> -v uniter-data:/data uniter
# It serves on 0.0.0.0:8080 inside the container, which needs API keys (`uniter keygen` makes
# one); the gallery lives in /data. Where public images cannot be pulled, `make image`
# (scripts/image.sh) makes both bases locally and passes them as GO_IMAGE and RUNTIME_IMAGE.
# The CUDA variant is Dockerfile.cuda: keep the two in step.

ARG GO_IMAGE=docker.io/library/golang:1.26-bookworm
ARG RUNTIME_IMAGE=docker.io/library/debian:bookworm-slim

# ---- build: the binary (cgo), ONNX Runtime, the smoke tool -------------------------------------
FROM ${GO_IMAGE} AS build
# scripts/install-ort.sh fetches with `npm pack` and checks with openssl: the public Go image has
# no npm (a prebuilt builder base, like the one `make image` makes, has both).
RUN if ! command -v npm >/dev/null || ! command -v openssl >/dev/null; then \
      apt-get update -qq \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends npm openssl >/dev/null \
      && rm -rf /var/lib/apt/lists/*; \
    fi
WORKDIR /src
# ONNX Runtime and the modules before the sources, so that their layers outlive source changes.
COPY scripts/install-ort.sh scripts/install-ort.sh
# ONNX Runtime's licence and third-party notices go into the image beside the library.
RUN bash scripts/install-ort.sh \
    && mkdir -p /out/licenses/onnxruntime \
    && tar --no-same-owner -xzf "$(ls .cache/npm/com.github.asus4.onnxruntime-[0-9]*.tgz | head -n1)" -C /out/licenses/onnxruntime \
       --strip-components=1 package/LICENSE package/ThirdPartyNotices.txt \
    && rm -rf .cache/npm /root/.npm
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=1 go build -trimpath -ldflags='-s -w' -o /out/uniter ./cmd/uniter \
    && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o /out/uniter-smoke ./scripts/smoke

# ---- runtime: what `docker run` starts --------------------------------------------------------
FROM ${RUNTIME_IMAGE} AS runtime
# A fixed numeric user, so that runAsNonRoot can check it; /data is its only writable folder.
RUN groupadd --system --gid 10001 uniter \
    && useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home --shell /usr/sbin/nologin uniter \
    && mkdir -p /data && chown 10001:10001 /data
WORKDIR /app
COPY --from=build /out/uniter /app/uniter
COPY --from=build /src/.cache/onnxruntime/lib/ /app/lib/
COPY --from=build /out/licenses/ /app/licenses/
COPY --from=build /src/bundles/shapes-uniter/ /app/bundles/default/
COPY --from=build /src/bundles/shapes-tasks/ /app/bundles/tasks/
ENV UNITER_ADDR=0.0.0.0:8080 \
    UNITER_BUNDLE=/app/bundles/default \
    UNITER_MODELS=/app/bundles/tasks \
    UNITER_ORT_LIBRARY=/app/lib/libonnxruntime.so \
    UNITER_DATA_DIR=/data \
    UNITER_LOG_FORMAT=json
USER 10001:10001
# The gallery (gallery.db): mount a volume here to keep it across containers.
VOLUME /data
EXPOSE 8080
# GET /readyz on the configured addr (no curl in the slim image). Warm-up takes a few seconds.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 CMD ["/app/uniter", "healthcheck"]
ENTRYPOINT ["/app/uniter", "serve"]
ARG VERSION=dev
ARG REVISION=unknown
ARG SOURCE=https://github.com/uniter-serve/uniter
ARG LICENSES=NOASSERTION
LABEL org.opencontainers.image.title="uniter" \
      org.opencontainers.image.description="UNITER image-text matching, retrieval and word-region alignment over HTTP, on ONNX Runtime (CPU), with the default Shapes World model" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="${LICENSES}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"

# ---- smoke: the image answers, inside the build --------------------------------------------------
# Starts `uniter serve` on a free loopback port with a throw-away key, waits for `uniter
# healthcheck`, sends a bundled sample with two true captions and one false to /v1/match and wants
# the true ones above 0.5 and the false one below; then SIGTERM must stop it with status 0.
FROM runtime AS smoke
COPY --from=build /out/uniter-smoke /smoke/uniter-smoke
COPY --from=build /src/web/samples/samples.json /src/web/samples/test-100-00000.png /smoke/
RUN /smoke/uniter-smoke -uniter /app/uniter -samples /smoke/samples.json -sample test-100-00000.png >/tmp/smoke.txt; \
    status=$?; cat /tmp/smoke.txt; exit $status

# ---- the image: runtime, with the smoke test's answer as a record (so that it runs on the way) ---
FROM runtime
COPY --from=smoke --chown=0:0 /tmp/smoke.txt /app/smoke-test.txt
