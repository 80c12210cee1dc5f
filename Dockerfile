# syntax=docker/dockerfile:1
#
# Sluice: build with the pinned toolchain (rust-toolchain.toml) and the
# wasm target, precompile the bundled plugins, run as non-root on a slim
# Debian with a read-only root filesystem.
#
#   docker build -t sluice:0.1.0 .
#   docker run --read-only -p 8080:8080 \
#     -v "$PWD/deploy/sluice.toml:/etc/sluice/sluice.toml:ro" sluice:0.1.0
#
# The build step is deploy/build.sh, which CI also runs natively.

FROM rust:1.95.0-slim-trixie AS build
# librdkafka is built from source (C compiler, make) with OpenSSL and zlib.
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        build-essential pkg-config libssl-dev zlib1g-dev python3 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN rustup show active-toolchain \
    && rustup target add wasm32-wasip2 \
    && ./deploy/build.sh /out release

FROM debian:trixie-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl libssl3t64 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/sluice --shell /usr/sbin/nologin sluice \
    && mkdir -p /etc/sluice /var/lib/sluice/plugins /var/cache/sluice \
    && chown sluice /var/cache/sluice
COPY --from=build /out/bin/sluice /usr/local/bin/sluice
COPY --from=build /out/plugins/ /var/lib/sluice/plugins/
COPY deploy/sluice.toml /etc/sluice/sluice.toml
USER 10001
ENV SLUICE_LISTEN=0.0.0.0:8080 \
    SLUICE_PLUGIN_DIR=/var/lib/sluice/plugins \
    SLUICE_CACHE_DIR=/var/cache/sluice
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:8080/health"]
ENTRYPOINT ["sluice"]
CMD ["run", "/etc/sluice/sluice.toml"]
