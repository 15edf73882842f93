# auth-server: a multi-stage build. The build stage compiles with the pinned
# Rust toolchain, caching the dependency build in its own layer; the runtime
# stage is distroless (glibc, no shell, no package manager) and runs as an
# unprivileged user, holding the binary and nothing else. The SQL migrations,
# the common-password list and the OpenAPI description are compiled into the
# binary (include_str!), so the build stage copies them; CI checks that every
# file the source embeds is copied here (.ci/check-build-inputs.sh) and builds
# this file for real (.ci/container.sh).

FROM rust:1.95.0-slim-bookworm AS build
WORKDIR /src
# The image needs no debug info (panic locations are logged without it):
# stripping takes the binary from about 21 MB to about 4 MB.
ENV CARGO_PROFILE_RELEASE_STRIP=true \
    CARGO_PROFILE_RELEASE_DEBUG=false

# Dependencies first: this layer is rebuilt only when Cargo.toml, Cargo.lock
# or the stub script change, not on every source edit. Cargo refuses a
# manifest whose declared targets (such as each [[bench]]) have no file, so
# the script gives every target Cargo.toml declares a placeholder.
COPY Cargo.toml Cargo.lock ./
COPY docker/stub-targets.sh /usr/local/bin/stub-targets
RUN stub-targets Cargo.toml \
    && cargo build --release --locked \
    && rm -rf src

# The placeholders for benches and other declared targets stay: a release
# build compiles only the library and the binary, whose sources come next.
COPY src ./src
COPY sql ./sql
COPY data ./data
COPY docs/openapi.json ./docs/openapi.json
# The mtime bump makes cargo rebuild our crate over the placeholder above.
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked \
    && mkdir -p /out/secrets \
    && cp target/release/auth-server /out/auth-server

# gcr.io/distroless/cc-debian12 matches the build stage's Debian 12 glibc.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/auth-server /auth-server
# An empty directory owned by the unprivileged user, for running
# `auth-server init-secret /secrets/...` with a volume mounted here.
COPY --from=build --chown=65532:65532 /out/secrets /secrets
USER 65532:65532
ENV BIND_ADDR=0.0.0.0:8080
EXPOSE 8080
# No shell or curl in the image: the binary checks its own health.
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["/auth-server", "healthcheck"]
ENTRYPOINT ["/auth-server"]
CMD ["serve"]
