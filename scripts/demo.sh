#!/usr/bin/env bash
# The main job on an embedded default: builds freezeframe and runs its demo, a
# session run by freezeframe as its OCI runtime, committed live, and a second
# session started from the committed image.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh build
cargo build --release --locked -p freezeframe
exec ./target/release/freezeframe demo "$@"
