#!/usr/bin/env bash
# Installs what the tests need and runs every check CI runs: formatting, lints, docs,
# unit tests and the root end-to-end tests against real mounts and real peers.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh test
if [[ $(id -u) -ne 0 ]]; then
  echo "warning: not root: the end-to-end tests need root and will fail or skip" >&2
fi
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
RUSTDOCFLAGS=-Dwarnings cargo doc --workspace --no-deps --locked
cargo build --locked -p freezeframe
export FREEZEFRAME_BIN="$PWD/target/debug/freezeframe"
cargo test --workspace --locked -- --test-threads=2
