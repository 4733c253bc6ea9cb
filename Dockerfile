# Builds the `wallet` binary (queries are checked against the committed
# `.sqlx/` data, so the build needs no database) into a small runtime image.
FROM rust:1.85-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin wallet

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 wallet
COPY --from=build /src/target/release/wallet /usr/local/bin/wallet
USER wallet
EXPOSE 8080
ENTRYPOINT ["wallet"]
CMD ["serve"]
