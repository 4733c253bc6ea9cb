# The `wallet` service in a small runtime image.
#
#   docker build -t wallet .
#   docker run -p 8080:8080 -e DATABASE_URL=postgres://… -e HMAC_SECRETS=… -e ADMIN_TOKEN=… wallet
#
# The image listens on 0.0.0.0:8080, which is not loopback: the service
# refuses to start there without HMAC_SECRETS and ADMIN_TOKEN (docs/API.md §5).
#
# The Rust version is Cargo.toml's `rust-version`; scripts/check-msrv fails CI
# when this file says another one.

FROM rust:1.89-bookworm AS build
WORKDIR /src
# Queries are checked at compile time against the committed `.sqlx/` data, so
# the build needs no database. The image gets a binary without debug info or
# symbols (Cargo.toml's release profile keeps line tables for profiling).
ENV SQLX_OFFLINE=true \
    CARGO_PROFILE_RELEASE_DEBUG=false \
    CARGO_PROFILE_RELEASE_STRIP=symbols

# The dependencies, in a layer of their own: built against an empty crate, so
# this layer is rebuilt only when Cargo.toml or Cargo.lock change.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && cargo build --release --locked --bin wallet \
    && rm -rf src

# The service. `sqlx::migrate!()` embeds migrations/ into the binary. COPY keeps
# the files' old modification times, older than the empty crate's build, so
# they are touched for cargo to see that the sources changed.
COPY .sqlx .sqlx
COPY migrations migrations
COPY src src
RUN find src -name '*.rs' -exec touch {} + \
    && cargo build --release --locked --bin wallet

# Debian 12's glibc and libgcc, as in the build stage, and nothing else: no
# shell, no package manager. uid 65532 is the image's `nonroot` user; a numeric
# USER lets Kubernetes' runAsNonRoot verify it.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/wallet /usr/local/bin/wallet
ENV WALLET_ADDR=0.0.0.0:8080
USER 65532:65532
EXPOSE 8080
# No curl in the image: the binary probes its own /health/ready (503 while the
# database is unreachable), on loopback at WALLET_ADDR's port.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/wallet", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/wallet"]
CMD ["serve"]
