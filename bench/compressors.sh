#!/usr/bin/env bash
# The gzip compressors freezeframe could use, measured on the same data in the
# same run: the W1 workload's tar stream (bench/workload.sh), compressed by each
# candidate's command-line tool on one core, so that CPU time per byte and size
# compare directly. Then freezeframe's own engine (libdeflate pieces on every
# core) at levels 4 to 6 against tar | pigz -6 on the whole workload.
#
#   bash bench/compressors.sh     # BENCH_DIR=/var/tmp/freezeframe-bench, BENCH_RUNS=3
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
runs=${BENCH_RUNS:-3}

bash scripts/deps.sh bench >/dev/null
cargo build --release --locked -p freezeframe >/dev/null 2>&1
ff=$root/target/release/freezeframe

source bench/workload.sh
out=$dir/compressors
mkdir -p "$out"
tar -C "$upper" -cf "$out/w1.tar" .
echo "workload: $upper: $files entries, $(($(stat -c %s "$out/w1.tar") >> 20)) MiB of tar"
echo "machine:  $(nproc) cores, $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"

median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# One core each: CPU seconds (user + sys) and size.
echo
echo "single core, the tar stream from the page cache; median CPU of $runs runs"
printf '%-26s %9s %11s %12s %10s\n' compressor cpu_s size_MiB cpu/pigz-6 size/pigz
tools=("pigz -6 -p1" "gzip -6" "libdeflate-gzip -4" "libdeflate-gzip -5" "libdeflate-gzip -6"
       "igzip -1" "igzip -2" "igzip -3" "zstd -3 -T1")
declare -A cpu size
for t in "${tools[@]}"; do
  times=""
  for _ in $(seq "$runs"); do
    /usr/bin/time -f '%U %S' -o "$out/time" sh -c "$t -c < '$out/w1.tar' > '$out/one.out'"
    times+="$(awk '{print $1 + $2}' "$out/time") "
  done
  cpu[$t]=$(median <<<"$times")
  size[$t]=$(stat -c %s "$out/one.out")
done
for t in "${tools[@]}"; do
  awk -v l="$t" -v c="${cpu[$t]}" -v s="${size[$t]}" -v pc="${cpu[pigz -6 -p1]}" -v ps="${size[pigz -6 -p1]}" \
    'BEGIN { printf "%-26s %9.2f %11.1f %12.2f %10.3f\n", l, c, s/1048576, c/pc, s/ps }'
done

# The two engines in-process, on one core, on the stdlib part (the random file
# is stored by the engine whatever the level).
echo
tar -C "$upper" -cf "$out/stdlib.tar" ./usr
cargo build --release --locked -p freezeframe-snapshot --example deflaters >/dev/null 2>&1
taskset -c 0 "$root/target/release/examples/deflaters" "$out/stdlib.tar"

# The whole engine against tar | pigz -6, every core, wall time.
echo
echo "every core: freezeframe commit against tar | pigz -6; median wall of $runs rounds"
names=(pigz ff4 ff5 ff6)
declare -A cmd output walls rss
for l in 4 5 6; do
  output[ff$l]=$out/ff$l.tar
  cmd[ff$l]="$ff commit --upper $upper -o $out/ff$l.tar --force --level $l"
done
output[pigz]=$out/pigz.tgz
cmd[pigz]="bash -c 'tar -C $upper -cf - . | pigz -6 > $out/pigz.tgz'"
for k in "${names[@]}"; do rss[$k]=0; walls[$k]=""; done
for _ in $(seq "$runs"); do
  for k in "${names[@]}"; do
    rm -f "${output[$k]}"
    eval "/usr/bin/time -f '%e %M %U %S' -o '$out/time' ${cmd[$k]}" >/dev/null 2>&1
    read -r w r u s < <(tail -1 "$out/time")
    walls[$k]+="$w "
    cpu[$k]=$(awk -v u="$u" -v s="$s" 'BEGIN {print u + s}')
    (( r > rss[$k] )) && rss[$k]=$r
    size[$k]=$(stat -c %s "${output[$k]}")
  done
done
printf '%-30s %8s %8s %11s %9s %10s %10s\n' contender wall_s cpu_s size_MiB rss_MiB wall/pigz size/pigz
pw=$(median <<<"${walls[pigz]}")
for k in "${names[@]}"; do
  case $k in pigz) label="tar | pigz -6" ;; *) label="freezeframe commit, level ${k#ff}" ;; esac
  awk -v l="$label" -v w="$(median <<<"${walls[$k]}")" -v c="${cpu[$k]}" -v s="${size[$k]}" -v r="${rss[$k]}" \
      -v pw="$pw" -v ps="${size[pigz]}" \
      'BEGIN { printf "%-30s %8.2f %8.2f %11.1f %9.1f %10.2f %10.3f\n", l, w, c, s/1048576, r/1024, w/pw, s/ps }'
done
rm -rf "$out"
