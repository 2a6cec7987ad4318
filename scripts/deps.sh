#!/usr/bin/env bash
# Installs the Debian packages freezeframe needs, once: `deps.sh build` for
# building and the demo, `deps.sh test` for the tests and the peers they read
# our output with, `deps.sh bench` for the benchmarks. Packages already present
# are not fetched again. Recommended packages are never installed, so each
# list names every package whose programs are run: tests/tests/deps.rs checks
# that against the code and the scripts.
set -euo pipefail

build=(gcc pkg-config libseccomp-dev busybox-static umoci tar)
test=("${build[@]}" skopeo runc containerd podman docker.io fuse-overlayfs attr pigz zstd time bc python3 docker-registry apache2-utils openssl libcap2-bin)
bench=("${test[@]}" libdeflate-tools isal)

case "${1:-build}" in
  build) want=("${build[@]}") ;;
  test) want=("${test[@]}") ;;
  bench) want=("${bench[@]}") ;;
  *) echo "usage: $0 build|test|bench" >&2; exit 2 ;;
esac

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "missing packages: ${missing[*]} (run as root to install them)" >&2
    exit 1
  fi
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v cargo >/dev/null || { echo "cargo is needed: install a Rust toolchain (rustup)" >&2; exit 1; }
