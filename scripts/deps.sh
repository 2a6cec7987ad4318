#!/usr/bin/env bash
# Installs the Debian packages freezeframe needs, once: `deps.sh build` for
# building and the demo, `deps.sh test` for the tests and peers they read our
# output with. Packages already present are not fetched again.
set -euo pipefail

build=(gcc pkg-config libseccomp-dev busybox-static umoci tar)
test=("${build[@]}" skopeo runc containerd podman attr pigz tar time bc python3)

case "${1:-build}" in
  build) want=("${build[@]}") ;;
  test) want=("${test[@]}") ;;
  *) echo "usage: $0 build|test" >&2; exit 2 ;;
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
