# UNITER service image: the binary, the ONNX Runtime library (from npm, integrity-checked by
# scripts/install-ort.sh, as `make ort` does) and the default bundle. Build: docker build -t uniter .
# Run: docker run -p 8080:8080 -e UNITER_AUTH_KEYS=name:write:sha256:<hex> -v uniter-data:/data uniter
# (serves on 0.0.0.0:8080 inside the container, which needs API keys: `uniter keygen` makes one;
# the gallery lives in /data)

FROM golang:1.26-bookworm AS build
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends npm openssl \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN bash scripts/install-ort.sh && CGO_ENABLED=1 go build -trimpath -o /out/uniter ./cmd/uniter

FROM debian:bookworm-slim
RUN useradd --system --home /app uniter && mkdir -p /data && chown uniter /data
WORKDIR /app
COPY --from=build /out/uniter /app/uniter
COPY --from=build /src/.cache/onnxruntime/lib/ /app/lib/
COPY --from=build /src/bundles/shapes-uniter/ /app/bundles/default/
ENV UNITER_ADDR=0.0.0.0:8080 \
    UNITER_BUNDLE=/app/bundles/default \
    UNITER_ORT_LIBRARY=/app/lib/libonnxruntime.so \
    UNITER_DATA_DIR=/data \
    UNITER_LOG_FORMAT=json
USER uniter
# The gallery (gallery.db): mount a volume here to keep it across containers.
VOLUME /data
EXPOSE 8080
ENTRYPOINT ["/app/uniter", "serve"]
