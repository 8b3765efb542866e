# syntax=docker/dockerfile:1
# The Stepwise operator image: a static binary on distroless, running as the
# nonroot user (65532), read-only root file system friendly.
#
#   docker build -t stepwise:0.1.0 .
#   docker run --rm stepwise:0.1.0 version
#
# Lint: scripts/hadolint.sh Dockerfile (tests/chart.sh runs it).

ARG RUST_VERSION=1.95

# ---- build: a static x86_64-unknown-linux-musl release binary
FROM rust:${RUST_VERSION}-slim-trixie AS build
ARG TARGET=x86_64-unknown-linux-musl
# musl-tools: musl-gcc, which the C parts of ring (rustls) are compiled with.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add "${TARGET}"
WORKDIR /src
# What .dockerignore lets in: Cargo.toml, Cargo.lock and the target sources.
COPY . .
# The cache mounts keep the registry and build outputs between builds; the
# binary is copied out of the cached target directory.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --target "${TARGET}" --bin stepwise \
 && cp "target/${TARGET}/release/stepwise" /stepwise \
 && /stepwise version

# ---- run: no shell, no package manager, non-root
FROM gcr.io/distroless/static-debian12:nonroot
LABEL org.opencontainers.image.title="stepwise" \
      org.opencontainers.image.description="Kubernetes operator that runs releases as ordered steps of Jobs, with step retries and guided failure" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /stepwise /stepwise
USER 65532:65532
# /metrics and /healthz, /readyz
EXPOSE 8080 8081
ENTRYPOINT ["/stepwise"]
CMD ["controller"]
