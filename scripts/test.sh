#!/usr/bin/env bash
# The whole test suite, as CI runs it: dependencies, test image, fmt, unused
# dependencies, clippy, tests.
set -euo pipefail
cd "$(dirname "$0")/.."
# A one-off build gains nothing from incremental state, and the workspace's share of it
# is about 14 GB of disk on top of the ~25 GB target directory.
export CARGO_INCREMENTAL=0
start=$(date +%s)
bash scripts/install-deps.sh
bash scripts/test-image.sh busybox:local
cargo fmt --all -- --check
# Every dependency in a Cargo.toml is used (cargo-machete, from install-deps.sh): an
# unused one costs build time on every machine and hides what a crate really needs.
cargo machete
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo build --workspace --bins --locked
# Unit and crate-level tests.
cargo test --workspace --locked --exclude persys-tests
# End-to-end tests: real processes, etcd, Docker and TLS. Two at a time on this
# 2-core machine keeps heartbeat timing honest.
cargo test -p persys-tests --locked -- --test-threads=2
echo "test suite finished in $(( $(date +%s) - start )) s"
