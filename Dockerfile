# Multi-stage: build with the Rust toolchain, run on a minimal, non-root image.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev && rm -rf /var/lib/apt/lists/*
COPY Cargo.toml Cargo.lock ./
COPY .cargo ./.cargo
COPY src ./src
COPY crates ./crates
COPY benches ./benches
COPY tests ./tests
RUN cargo build --release --locked --bin eventspan

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/eventspan /eventspan
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/eventspan"]
CMD ["run"]
