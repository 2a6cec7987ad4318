#!/usr/bin/env bash
# freezeframe as the OCI runtime, against runc on the same bundle in the same
# run: the wall time of each verb of a container's life (create, start, exec,
# state, pause, resume, kill, delete), median and p90 over BENCH_RUNS lives. Then
# home seeding: `create` with an image home of ~20,000 files (~200 MiB) into an
# empty scratch dir, against `cp -a` of the same tree, and a create without it.
#
#   bash bench/runtime.sh         # BENCH_DIR=/var/tmp/freezeframe-bench, BENCH_RUNS=20
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${BENCH_RUNS:-20}
dir=${BENCH_DIR:-/var/tmp/freezeframe-bench}/runtime
bash scripts/deps.sh bench >/dev/null
cargo build --release --locked -p freezeframe >/dev/null 2>&1
ff=$PWD/target/release/freezeframe
id=ffrt-$$

cleanup() {
  for rt in "$ff" runc; do
    "$rt" --root "$dir/state" delete --force "$id" >/dev/null 2>&1 || true
  done
  rm -rf --one-file-system "$dir"
}
trap cleanup EXIT
rm -rf --one-file-system "$dir"
mkdir -p "$dir"/{bundle/rootfs/bin,state,home}
root=$dir/bundle/rootfs
cp /bin/busybox "$root/bin/"
for a in $(busybox --list); do [ "$a" = busybox ] || ln -s busybox "$root/bin/$a"; done
mkdir -p "$root"/{dev,proc,sys,tmp,etc,home/work}
(cd "$dir/bundle" && runc spec)
python3 - "$dir/bundle/config.json" "$dir/home" <<'EOF'
import json, sys
path, home = sys.argv[1], sys.argv[2]
c = json.load(open(path))
c["process"]["terminal"] = False
c["process"]["args"] = ["sleep", "100000"]
c["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}]
c["root"]["readonly"] = False
c["linux"]["cgroupsPath"] = "/ffbench"
c["mounts"].append({"destination": "/home/work", "type": "bind", "source": home,
                    "options": ["rbind", "rw"]})
json.dump(c, open(path, "w"))
EOF

now() { date +%s%N; }
# One life of a container; prints "verb nanoseconds" lines.
life() {
  local rt=$1 t
  for step in "create --bundle $dir/bundle" start "exec $id true" state pause resume "kill $id KILL" delete; do
    set -- $step
    verb=$1; shift
    args=("$@")
    case $verb in exec | kill) ;; *) args+=("$id") ;; esac
    t=$(now)
    "$rt" --root "$dir/state" "$verb" "${args[@]}" </dev/null >/dev/null 2>&1 || {
      echo "$rt $verb failed" >&2; exit 1; }
    echo "$verb $(($(now) - t))"
    if [ "$verb" = kill ]; then
      for _ in $(seq 100); do
        "$rt" --root "$dir/state" state "$id" 2>/dev/null | grep -q '"stopped"' && break
        sleep 0.01
      done
    fi
  done
}

stats() { # stdin: verb ns -> verb median_ms p90_ms
  python3 -c '
import sys, collections
d = collections.defaultdict(list)
for line in sys.stdin:
    v, ns = line.split(); d[v].append(int(ns) / 1e6)
order = ["create", "start", "exec", "state", "pause", "resume", "kill", "delete"]
for v in order:
    xs = sorted(d[v]); n = len(xs)
    print(f"{v} {xs[n // 2]:.1f} {xs[min(n - 1, int(n * 0.9))]:.1f}")
tot = sorted(sum(d[v][i] for v in order) for i in range(len(d["create"])))
print(f"total {tot[len(tot) // 2]:.1f} {tot[min(len(tot) - 1, int(len(tot) * 0.9))]:.1f}")'
}

echo "== one container's life, $runs runs each, alternating (ms: median / p90)"
: >"$dir/ff.txt"; : >"$dir/runc.txt"
for _ in $(seq "$runs"); do
  life "$ff" >>"$dir/ff.txt"
  life runc >>"$dir/runc.txt"
done
join <(stats <"$dir/ff.txt") <(stats <"$dir/runc.txt") |
  awk 'BEGIN { printf "%-8s %18s %18s %8s\n", "verb", "freezeframe", "runc", "ratio" }
       { printf "%-8s %8.1f / %7.1f %8.1f / %7.1f %7.2fx\n", $1, $2, $3, $4, $5, $2 / $4 }'

echo
echo "== home seeding: an image home of ~20,000 files into an empty scratch dir"
src=$root/home/work
python3 - "$src" <<'EOF'
import os, sys
root = sys.argv[1]
for d in range(200):
    p = os.path.join(root, f"pkg{d:03}", "sub")
    os.makedirs(p, exist_ok=True)
    for f in range(100):
        with open(os.path.join(p, f"m{f:03}.py"), "wb") as out:
            out.write(os.urandom(10240))
EOF
chown -R 1000:1000 "$src"
du -sh "$src" | awk '{print "image home:", $1}'
seed_ms=() cp_ms=() none_ms=()
for _ in $(seq 3); do
  rm -rf --one-file-system "$dir/home"; mkdir "$dir/home"; sync
  echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
  t=$(now)
  "$ff" --root "$dir/state" create --bundle "$dir/bundle" "$id" </dev/null >/dev/null 2>&1
  seed_ms+=($((($(now) - t) / 1000000)))
  "$ff" --root "$dir/state" delete --force "$id" >/dev/null
  [ "$(find "$dir/home" | wc -l)" -gt 20000 ] || { echo "seeding copied too little" >&2; exit 1; }

  rm -rf --one-file-system "$dir/home"; mkdir "$dir/home"; sync
  echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
  t=$(now)
  cp -a "$src/." "$dir/home/"
  cp_ms+=($((($(now) - t) / 1000000)))

  rm -rf --one-file-system "$dir/home"; mkdir "$dir/home"
  t=$(now)
  "$ff" --root "$dir/state" create --no-seed-home --bundle "$dir/bundle" "$id" </dev/null >/dev/null 2>&1
  none_ms+=($((($(now) - t) / 1000000)))
  "$ff" --root "$dir/state" delete --force "$id" >/dev/null
done
med() { printf '%s\n' "$@" | sort -n | sed -n 2p; }
s=$(med "${seed_ms[@]}") c=$(med "${cp_ms[@]}") n=$(med "${none_ms[@]}")
printf 'create with seeding   %6d ms (runs: %s)\n' "$s" "${seed_ms[*]}"
printf 'create, no seeding    %6d ms (runs: %s)\n' "$n" "${none_ms[*]}"
printf 'cp -a of the tree     %6d ms (runs: %s)\n' "$c" "${cp_ms[*]}"
printf 'seeding alone vs cp -a: %.2fx\n' "$(echo "($s - $n) / $c" | bc -l)"
