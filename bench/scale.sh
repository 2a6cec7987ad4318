#!/usr/bin/env bash
# A scale curve of a live commit (`freezeframe commit ID --pause auto`, the
# default) of an idle runc session: wall time, frozen time (watched from
# outside, by sampling the container's freezer every millisecond, as
# bench/live.sh does; freezeframe's own frozen_ms beside it) and peak RSS of the
# freezeframe process (GNU time's %M), against the size of the session's home.
# The session is an overlay rootfs over a busybox lower with an empty upper dir,
# and the home bind-mounted at /home/work, as a platform session has.
#
# Points (SCALE_POINTS, default "10k 100k 250k 1m 1g 4g 10g 30g"):
#   Nk, Nm  a home of that many small files (100 to 1,100 bytes of text each,
#           1,000 to a directory; shared with bench/live.sh's homes);
#   Ng      a home of N GiB of data: 1 GiB of dense data (256 MiB of random
#           bytes and 768 MiB of text, generated once), plus N - 1 GiB of sparse
#           files made with `truncate` (at most 8 GiB each). A layer carries a
#           hole's bytes as zeros, so the sparse part costs compression time
#           and no disk read: it measures the engine, not the disk.
#
# Disk: on ext4 every small file takes a 4 KiB block: 10k files take 40 MiB,
# 100k 0.4 GiB, 250k 1 GiB, 1m 4.1 GiB. The data points take 1 GiB (the sparse
# files take none), plus the output archive of each run (up to the dense data's
# size; removed after each run) and freezeframe's own spool. With SCALE_KEEP=0
# (the default) whatever this run generated is deleted as soon as its points are
# done, so the peak is the largest point plus its archive: about 5 GiB with 1m.
# SCALE_KEEP=1 keeps it in $BENCH_DIR for the next run (homes in
# $BENCH_DIR/homes, data in $BENCH_DIR/scale-data).
#
#   bash bench/scale.sh            # BENCH_DIR=/var/tmp/freezeframe-bench, BENCH_RUNS=1
#   SCALE_POINTS="10k 1g" bash bench/scale.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
runs=${BENCH_RUNS:-1}
points=${SCALE_POINTS:-}
[[ -n $points ]] || points="10k 100k 250k 1m 1g 4g 10g 30g"
keep=${SCALE_KEEP:-0}
bash scripts/deps.sh bench >/dev/null
cargo build --release --locked -p freezeframe >/dev/null 2>&1
ff=$root/target/release/freezeframe
dir=${BENCH_DIR:-/var/tmp/freezeframe-bench}
# This run's scratch: runs side by side never delete each other's.
work=$dir/scale-$$
session() { WORK=$work bash bench/session.sh "$@"; }
data=$dir/scale-data
echo "machine: $(nproc) cores, $(uname -r); points: $points; $runs runs each (median wall and frozen, largest RSS)"

id=ffscale-$$
made_data=0
made_homes=()
cleanup() {
  session stop "$id"
  # Never through a mount still in place.
  rm -rf --one-file-system "$work"
  rm -f "$data"/sparse-*
  if [[ $keep != 1 && $made_data == 1 ]]; then
    rm -f "$data.ready"
    rm -rf --one-file-system "$data"
  fi
  if [[ $keep != 1 ]]; then
    for n in "${made_homes[@]}"; do session drop-home "$n"; done
  fi
  rmdir "$dir/homes" 2>/dev/null || true
}
trap cleanup EXIT
umount "$work/rootfs" 2>/dev/null || true
rm -rf --one-file-system "$work"; mkdir -p "$work/out"
session lower
runs_tsv=$work/runs.tsv
: > "$runs_tsv"

# dense_data: the 1 GiB of dense data, in $data.
dense_data() {
  [[ -f $data.ready ]] && return
  made_data=1
  rm -f "$data.ready"
  rm -rf --one-file-system "$data"
  mkdir -p "$data"
  python3 - "$data" <<'PY'
import os, random, sys
root = sys.argv[1]
random.seed(13)
with open(os.path.join(root, "random.bin"), "wb") as f:
    for _ in range(256):
        f.write(random.randbytes(1 << 20))
for part in range(3):
    with open(os.path.join(root, "text-%d.log" % part), "wb") as f:
        for c in range(256):
            base = (part * 256 + c) * 20000
            lines = [b"%010d step=%d loss=%.6f lr=%.2e ok\n" % (base + i, i, 1 / (1 + i + c), 3e-4 / (1 + c))
                     for i in range(20000)]
            buf = b"".join(lines)
            f.write((buf * (1 + (1 << 20) // len(buf)))[: 1 << 20])
PY
  touch "$data.ready"
}

# row POINT ENTRIES BYTES EXT OWN RSS PATH READ WALL OUT
row() { local IFS=$'\t'; echo "$*" >> "$runs_tsv"; }

# run_point POINT HOME: BENCH_RUNS live commits of a session whose home is HOME.
run_point() {
  local point=$1 hm=$2 entries bytes
  entries=$(find "$hm" -mindepth 1 | wc -l)
  bytes=$(du -s --apparent-size -B1 "$hm" | cut -f1)
  echo "point $point: $entries entries, $((bytes >> 20)) MiB (apparent) in the home"
  rm -rf --one-file-system "$work/upper"; mkdir -p "$work/upper"
  freezer=$(session start "$id" "$work/upper" "$hm")
  for _ in $(seq "$runs"); do
    out=$(session watch "$freezer" /usr/bin/time -f %M -o "$work/time" \
      "$ff" commit "$id" --config /dev/null --pause auto --json --force -o "$work/out/ff.tar")
    read -r e _ w <<<"$out"
    out=$(session frozen "$work/last.json")
    IFS=$'\t' read -r own path fread <<<"$out"
    row "$point" "$entries" "$bytes" "$e" "$own" "$(tail -1 "$work/time")" "$path" "$fread" "$w" \
      "$(stat -c %s "$work/out/ff.tar")"
    rm -f "$work/out/ff.tar"
  done
  session stop "$id"
}

for point in $points; do
  case $point in
    *[gG])
      gib=${point%[gG]}
      dense_data
      left=$((gib - 1)); k=0
      while ((left > 0)); do
        part=$((left > 8 ? 8 : left))
        truncate -s "${part}G" "$data/sparse-$k"
        left=$((left - part)); k=$((k + 1))
      done
      run_point "$point" "$data"
      rm -f "$data"/sparse-*
      ;;
    *)
      n=$(session count "$point")
      out=$(session home "$n")
      read -r home home_made <<<"$out"
      ((home_made)) && made_homes+=("$n")
      run_point "$point" "$home"
      # What this run generated goes as soon as it is measured.
      [[ $keep == 1 || $home_made == 0 ]] || session drop-home "$n"
      ;;
  esac
done

echo
python3 - "$runs_tsv" <<'PY'
import collections, statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
groups = collections.OrderedDict()
for point, entries, size, ext, own, rss, path, read, wall, out in rows:
    groups.setdefault((point, entries, size), []).append((ext, own, rss, path, read, wall, out))

def med(xs):
    return statistics.median_low([float(x) for x in xs])

def distinct(xs):
    c = collections.Counter(xs)
    if len(c) == 1:
        return next(iter(c))
    return "; ".join(f"{v} ({k}x)" for v, k in c.most_common())

print(f"{'point':<7} {'entries':>9} {'home_MiB':>9} {'wall_s':>8} {'frozen_ms':>9} {'own_ms':>7} "
      f"{'rss_MiB':>8} {'out_MiB':>8}  {'path':<6} frozen_read")
for (point, entries, size), runs in groups.items():
    print(f"{point:<7} {entries:>9} {int(size) / 1048576:>9.0f} {med(r[5] for r in runs):>8.2f} "
          f"{med(r[0] for r in runs):>9.0f} {med(r[1] for r in runs):>7.0f} "
          f"{max(float(r[2]) for r in runs) / 1024:>8.1f} {med(r[6] for r in runs) / 1048576:>8.1f}  "
          f"{distinct(r[3] for r in runs):<6} {distinct(r[4] for r in runs)}")
PY
