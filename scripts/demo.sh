#!/usr/bin/env bash
# The main job on an embedded default: builds freezeframe and runs its demo, a
# throwaway session on a real overlay mount, committed and verified.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh build
cargo build --release --locked -p freezeframe
exec ./target/release/freezeframe demo "$@"
