# syntax=docker/dockerfile:1
# Multi-stage build: the toolchain stays in the build stage; the runtime image holds the binary,
# its CA certificates and nothing else worth attacking. Runs as a non-root user on a read-only
# root filesystem (see docker-compose.yml); the SQLite file lives on the /data volume.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
COPY migrations ./migrations
COPY static ./static
RUN cargo build --release --locked \
 && strip target/release/filmvault

FROM debian:bookworm-slim AS runtime
# ca-certificates is left unpinned on purpose: it should track Debian's security updates.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /nonexistent --shell /usr/sbin/nologin filmvault \
 && mkdir /data \
 && chown filmvault:filmvault /data \
 && chmod 0700 /data
COPY --from=build /src/target/release/filmvault /usr/local/bin/filmvault
USER 10001:10001
WORKDIR /data
ENV APP_HOST=0.0.0.0 \
    APP_PORT=8080 \
    DATABASE_URL=sqlite:///data/filmvault.db \
    LOG_FORMAT=json
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["filmvault", "healthcheck"]
ENTRYPOINT ["filmvault"]
CMD ["serve"]
