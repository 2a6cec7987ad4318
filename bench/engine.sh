#!/usr/bin/env bash
# The layer engine against tar | pigz -6 and tar | gzip -6, on the same data in
# the same run: a Python standard library tree plus a 256 MiB random file, laid
# out as an overlay upper dir. Prints wall time, output size and peak RSS of each,
# and the ratios the targets are stated in (see BENCHMARKS.md).
#
#   bash bench/engine.sh            # BENCH_DIR=/var/tmp/freezeframe-bench, BENCH_RUNS=3
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
runs=${BENCH_RUNS:-3}

bash scripts/deps.sh bench >/dev/null
cargo build --release --locked -p freezeframe >/dev/null 2>&1
ff=$root/target/release/freezeframe

source bench/workload.sh
echo "workload: $upper: $files entries, $((bytes >> 20)) MiB (stdlib from $stdlib + 256 MiB random)"
echo "machine:  $(nproc) cores, $(uname -r); $runs runs each, median wall time"
tar -C "$upper" -cf - . >/dev/null   # warm the page cache for every contender alike

out=$dir/out
mkdir -p "$out"
# Contenders run in turn, round after round, so that a change in the machine's
# load touches all of them alike; each gets its median wall time and its
# largest peak RSS.
names=(ff ff_zstd pigz gzip)
declare -A cmd output walls rss size
output[ff]=$out/ff.tar;       cmd[ff]="$ff commit --upper $upper -o $out/ff.tar --force --json"
output[ff_zstd]=$out/ffz.tar; cmd[ff_zstd]="$ff commit --upper $upper -o $out/ffz.tar --force --json --compression zstd"
output[pigz]=$out/pigz.tgz;   cmd[pigz]="bash -c 'tar -C $upper -cf - . | pigz -6 > $out/pigz.tgz'"
output[gzip]=$out/gzip.tgz;   cmd[gzip]="bash -c 'tar -C $upper -cf - . | gzip -6 > $out/gzip.tgz'"
for k in "${names[@]}"; do rss[$k]=0; walls[$k]=""; done
for round in $(seq "$runs"); do
  for k in "${names[@]}"; do
    rm -f "${output[$k]}"
    eval "/usr/bin/time -f '%e %M' -o '$out/time' ${cmd[$k]}" >/dev/null 2>&1
    read -r w r < <(tail -1 "$out/time")
    walls[$k]+="$w "
    (( r > rss[$k] )) && rss[$k]=$r
    size[$k]=$(stat -c %s "${output[$k]}")
  done
  echo "round $round done"
done
declare -A wall
for k in "${names[@]}"; do
  wall[$k]=$(tr ' ' '\n' <<<"${walls[$k]}" | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
done

printf '\n%-34s %9s %12s %10s %12s %12s\n' contender wall_s size_MiB rss_MiB wall/pigz size/pigz
for k in ff ff_zstd pigz gzip; do
  case $k in
    ff) label="freezeframe commit (gzip, level 4)" ;;
    ff_zstd) label="freezeframe commit (zstd -3)" ;;
    pigz) label="tar | pigz -6" ;;
    gzip) label="tar | gzip -6" ;;
  esac
  awk -v l="$label" -v w="${wall[$k]}" -v s="${size[$k]}" -v r="${rss[$k]}" \
      -v pw="${wall[pigz]}" -v ps="${size[pigz]}" \
      'BEGIN { printf "%-34s %9.2f %12.1f %10.1f %12.2f %12.3f\n", l, w, s/1048576, r/1024, w/pw, s/ps }'
done
echo
awk -v w="${wall[ff]}" -v pw="${wall[pigz]}" -v s="${size[ff]}" -v ps="${size[pigz]}" -v r="${rss[ff]}" -v rz="${rss[ff_zstd]}" 'BEGIN {
  printf "target wall <= 0.35 x pigz:  %.2f  %s\n", w/pw, (w/pw <= 0.35 ? "met" : "NOT met")
  printf "target size <= 1.02 x pigz:  %.3f %s\n", s/ps, (s/ps <= 1.02 ? "met" : "NOT met")
  printf "target peak RSS <= 64 MiB:   %.1f / %.1f MiB (gzip / zstd) %s\n", r/1024, rz/1024, (r <= 65536 && rz <= 65536 ? "met" : "NOT met")
}'
"$ff" inspect "$out/ff.tar" >/dev/null && echo "freezeframe inspect: archive verified"
