# Sourced by the benchmarks: builds (once) the shared workload, a Python standard
# library tree plus a 256 MiB random file laid out as an overlay upper dir, in
# $BENCH_DIR/upper. Sets $upper, $files, $bytes.
dir=${BENCH_DIR:-/var/tmp/freezeframe-bench}
upper=$dir/upper
stdlib=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')
if [[ ! -f $dir/.ready ]]; then
  rm -rf "$dir"
  mkdir -p "$upper/usr/lib" "$upper/data"
  cp -a "$stdlib" "$upper/usr/lib/"
  python3 - "$upper/data/random.bin" <<'PY'
import random, sys
random.seed(7)
with open(sys.argv[1], "wb") as f:
    for _ in range(256):
        f.write(random.randbytes(1 << 20))
PY
  touch "$dir/.ready"
fi
files=$(find "$upper" | wc -l)
bytes=$(du -sb "$upper" | cut -f1)
